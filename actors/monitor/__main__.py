from broker.runtime import main

from .monitor import Monitor

main(Monitor)
