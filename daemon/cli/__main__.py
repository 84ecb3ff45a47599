"""``python -m neural_style.daemon.cli``: the same as the ``neural-style`` command."""

import sys

from neural_style.daemon.cli.entry_point import main

sys.exit(main())
