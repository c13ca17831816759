from broker.actor import main

from .scanner import Scanner

main(Scanner)
