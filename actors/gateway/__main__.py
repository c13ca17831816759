from broker.actor import main

from .gateway import Gateway

main(Gateway)
