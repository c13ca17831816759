from broker.actor import main

from .monitor import Monitor

main(Monitor)
