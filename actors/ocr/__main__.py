from broker.runtime import main

from .ocr import Ocr

main(Ocr)
