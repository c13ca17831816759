from broker.actor import main

from .barcode import Barcode

main(Barcode)
