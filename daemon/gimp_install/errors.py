"""The installer's one error: a problem the user fixes by changing the command line."""

from __future__ import annotations


class InstallError(Exception):
    """A problem the user fixes by changing the command line (message says how)."""
