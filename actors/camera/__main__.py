from broker.actor import main

from .camera import Camera

main(Camera)
