"""Code both ends import: the wire protocol, the client, limits and error codes.

Standard library + pyzmq + msgpack only: this package is copied into the GIMP plug-in
folder, where numpy and TensorFlow are absent.
"""

__version__ = "0.1.0"
