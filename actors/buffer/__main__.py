from broker.runtime import main

from .buffer import Buffer

main(Buffer)
