"""The GIMP 3 plug-in (copied into GIMP\x27s plug-in folder by ``neural-style install-plugin``)."""
