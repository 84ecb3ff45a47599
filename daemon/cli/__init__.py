"""The command line: ``neural-style`` (entry_point.py) and one module per command group.

stylize.py and batch.py run jobs (their flags from job_options.py, their reports from
reports.py, a daemon reached through remote.py); serve.py: serve/status/stop/keys;
weights.py; install_plugin.py (the work is daemon/gimp_install/); bench.py; doctor.py.
"""

from neural_style.daemon.cli.entry_point import main

__all__ = ["main"]
