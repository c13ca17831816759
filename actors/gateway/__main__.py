from broker.runtime import main

from .gateway import Gateway

main(Gateway)
