"""The GIMP installer: put the GIMP 3 plug-in where GIMP finds it, for GIMP's own Python.

One module per idea: ``discovery`` (GIMP's profiles and prefixes: native, Flatpak,
chroot), ``interpreter`` (which Python GIMP runs, and what wheels it takes), ``wheels``
(pyzmq + msgpack for it), ``help_pages`` (the dialog's Help), ``install`` (assembling,
swapping in and removing the plug-in folder). The commands are daemon/cli/install_plugin.py.

Layout written into every GIMP 3 ``plug-ins`` folder found (or named with ``--gimp-dir``)::

    plug-ins/neural_style/neural_style.py      the plug-in (0755; GIMP needs folder == file name)
    plug-ins/neural_style/nsg_shared/          copy of neural_style.shared (protocol + client)
    plug-ins/neural_style/vendor/py3XX/        pyzmq + msgpack unpacked from wheels for Python 3.XX
    plug-ins/neural_style/INSTALLED.json       what was installed, from where, for which Python

Why vendoring: GIMP runs plug-ins with *its* Python (bundled on Windows, macOS and Flatpak, the
system one on Linux distributions), which does not see the virtual environment the daemon lives
in. Wheels are kept per Python version, so after a GIMP upgrade to a newer Python the plug-in
falls back to importable system packages, or tells the user to re-run this command.

Which Python is GIMP's: ``--python CMD`` names it (a command line, so
``"chroot /srv/trixie /usr/bin/python3"`` or ``"flatpak run --command=python3 org.gimp.GIMP"``
work). Without it: a Flatpak profile uses ``flatpak run --command=python3 org.gimp.GIMP``; a
profile inside a chroot (a parent folder holding ``usr/bin/gimp-console-3.0``) uses
``chroot ROOT python3`` when running as root; otherwise the interpreter named in GIMP's
``<prefix>/lib/gimp/3.0/interpreters/pygimp.interp`` (prefix: where the ``gimp-3.0`` on PATH
lives, else /usr, /usr/local, /opt/gimp, the macOS bundle), else ``python3`` on PATH outside
the virtual environment this command runs in (never the venv's own Python). When none is
found it stops and says what it searched. ``--python-version X.Y`` skips the query.
"""
