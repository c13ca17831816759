from broker.actor import main

from .uploader import Uploader

main(Uploader)
