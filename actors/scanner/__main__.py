from broker.runtime import main

from .scanner import Scanner

main(Scanner)
