from facequeue.cli import entrypoint

entrypoint()
