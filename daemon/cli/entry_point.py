"""``neural-style``: the one command-line entry point, with subcommands.

Every user-facing failure is a :class:`NeuralStyleError`; ``main`` prints its message and
hint as one paragraph on stderr and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from neural_style.shared import __version__
from neural_style.shared.errors import NeuralStyleError

EXIT_USAGE = 2
#: Set before TensorFlow is imported, unless --verbose: its C++ start-up lines (absl's
#: "All log messages before absl::InitializeLog()", cpu_feature_guard, oneDNN notes) are
#: noise for a user; errors still show.
VERBOSE_HELP = "show TensorFlow's own start-up and log messages"
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}


def _quiet_tensorflow(argv: Sequence[str] | None = None) -> bool:
    """Silence TensorFlow's start-up chatter unless ``--verbose`` is among the arguments.

    Called before anything imports TensorFlow (env variables are read at its import); child
    processes (a daemon started by the CLI) inherit the setting. Returns whether verbose.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    verbose = "--verbose" in args or os.environ.get("NEURAL_STYLE_VERBOSE") == "1"
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if verbose:
        os.environ["NEURAL_STYLE_VERBOSE"] = "1"
        return True
    os.environ.update(QUIET_ENV)
    from neural_style.daemon.quiet import hide_tensorflow_start_up

    hide_tensorflow_start_up()  # the lines TensorFlow prints before absl reads its level
    return False


CommandAdder = Callable[[argparse._SubParsersAction], None]


def _command_adders() -> list[CommandAdder]:
    """Each command group's ``add_commands``, in the order ``--help`` lists them."""
    from neural_style.daemon.cli import (
        batch,
        bench,
        doctor,
        install_plugin,
        serve,
        stylize,
        weights,
    )

    return [
        stylize.add_commands,
        batch.add_commands,
        weights.add_commands,
        serve.add_commands,
        install_plugin.add_commands,
        bench.add_commands,
        doctor.add_commands,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neural-style",
        description="Neural style transfer (Gatys et al.) for GIMP 3: CLI and daemon.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _command_adders():
        add(sub)
    for command in sub.choices.values():  # `neural-style stylize ... --verbose` works too
        if "--verbose" not in command._option_string_actions:
            command.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_tensorflow(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except NeuralStyleError as exc:
        text = exc.message + (f"\n{exc.hint}" if exc.hint else "")
        print(f"neural-style: error: {text}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("neural-style: interrupted; nothing was written.", file=sys.stderr)
        return 130
