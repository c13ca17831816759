from broker.runtime import main

from .barcode import Barcode

main(Barcode)
