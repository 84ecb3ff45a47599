"""Code both ends import: the wire protocol, the client, limits and error codes.

Standard library + pyzmq + msgpack only: this package is copied into the GIMP plug-in
folder, where numpy and TensorFlow are absent.
"""

#: The package version, written only here: pyproject.toml reads it (dynamic version), and
#: the plug-in's bundled copy (``nsg_shared``) carries it where no package metadata exists.
__version__ = "0.1.0"
