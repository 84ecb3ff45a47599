"""The options of a stylize job, shared by ``stylize`` and ``batch``: one flag per job
parameter (from shared/schema.py), the preset rule, and ``--init`` as a mode or a file."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from neural_style.shared import schema

if TYPE_CHECKING:
    from neural_style.daemon.engine.params import StyleParams

DEFAULTS_NOTE = (
    "Without --preset the balanced preset applies; the per-flag defaults below are the plain "
    "method's (TensorFlow's style-transfer tutorial), used under --preset none. See README."
)
#: What `stylize` runs when no preset is named: the presets were tuned on a trained network
#: for good pictures fast; the tutorial's loop (``--preset none``) needs ~4x longer.
DEFAULT_PRESET = "balanced"
NO_PRESET = "none"


def non_negative_int(text: str) -> int:
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
    parsers = {schema.INT: non_negative_int, schema.FLOAT: _float, schema.FLOATS: _blend,
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
    return None if value is None or value in init_modes() else str(value)


def init_modes() -> tuple[str, ...]:
    """The modes ``--init`` names (content, noise, style), from the schema."""
    return tuple(next(f.choices for f in schema.FIELDS if f.name == INIT_FLAG))
