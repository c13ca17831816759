from broker.runtime import main

from .camera import Camera

main(Camera)
