from broker.actor import main

from .ocr import Ocr

main(Ocr)
