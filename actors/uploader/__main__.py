from broker.runtime import main

from .uploader import Uploader

main(Uploader)
