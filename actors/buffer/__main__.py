from broker.actor import main

from .buffer import Buffer

main(Buffer)
