#!/usr/bin/env python3
"""Neural Style for GIMP 3: Filters > Artistic > Neural Style...

A thin client: it reads the active layer (or the selection's bounding box of it) and a style
layer, sends both to the Neural Style daemon over ZeroMQ, shows progress, and inserts the
result as a new layer directly above the content layer. All computing happens in the daemon
(`neural-style serve`); this file needs only GIMP's own Python, pyzmq and msgpack (vendored by
`neural-style install-plugin` into vendor/py3XX/ beside this file) and the bundled
`nsg_shared` package (protocol + client). No numpy.

Arguments (procedure ``python-fu-neural-style``): style-layer, iterations, max-size,
style-strength, preserve-color, endpoint, then (appended, so positional callers keep working)
style-layer-2, style-blend, style-scale, preset, color-mode; returns new-layer. A selection is
sent as the job's mask (8-bit, feathering kept): outside it the result equals the content.

Pixels travel through babl in the image's own precision so 16-bit and float images keep
their depth: ``R'G'B'A u8`` / ``u16`` / ``float`` for RGB images and ``Y'A ...`` for GRAY
ones (the daemon returns the content's channel layout, so a GRAY image gets a GRAY layer).
32-bit integer images travel as u16, half/double as float. The style layer is always read
as ``R'G'B' u8``: its colour statistics are all the daemon needs.

Environment knobs (GIMP passes its environment to plug-ins): NEURAL_STYLE_TIMEOUT (seconds to
wait for the daemon, default 10), NEURAL_STYLE_EXTRA_PARAMS (a JSON object merged into the job's
parameters, for settings the dialog does not offer yet, e.g. '{"seed": 1, "init": "noise"}';
the daemon validates it), NEURAL_STYLE_PLUGIN_LOG (append JSON lines of what happened:
used by the end-to-end tests, handy for bug reports), NEURAL_STYLE_CONNECTION_FILE (read by
the client).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import struct
import sys
import time
import traceback
from typing import Any

PROC_NAME = "python-fu-neural-style"
HELP_DOMAIN = "org.neural-style.gimp"
PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
SHARED_PACKAGE = "nsg_shared"
REINSTALL_COMMAND = "neural-style install-plugin"
START_COMMAND = "neural-style serve"
FETCH_WEIGHTS_COMMAND = "neural-style fetch-weights"

#: Engine defaults (daemon/params.py): content 1e4, style 1e-2. style-strength multiplies the
#: style weight, so the style/content ratio is strength x 1e-6.
BASE_CONTENT_WEIGHT = 1e4
BASE_STYLE_WEIGHT = 1e-2

DEFAULT_ITERATIONS = 300
DEFAULT_MAX_SIZE = 512
DEFAULT_STRENGTH = 1.0
MIN_MAX_SIZE, MAX_MAX_SIZE = 32, 4096
MAX_STRENGTH = 100.0
DEFAULT_BLEND = 0.5
DEFAULT_STYLE_SCALE = 1.0
MIN_STYLE_SCALE, MAX_STYLE_SCALE = 0.1, 4.0
#: preset -> the iteration count the daemon's preset sets (daemon/params.py PRESETS; a unit
#: test keeps them equal). The daemon applies the preset; the plug-in only needs the count for
#: its progress bar and preview rate. "custom" sends no preset: iterations as given.
PRESETS_FILE = "presets.json"  # written by install-plugin from daemon/params.py PRESETS


def load_presets(base: str = PLUGIN_DIR) -> dict[str, dict[str, Any]]:
    """The daemon's presets: the copy install-plugin bundled, else the daemon's own module
    (a checkout), else the figures this file was written with."""
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(base, PRESETS_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
        if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            return data
    try:
        from neural_style.daemon.params import PRESETS as daemon_presets

        return {k: dict(v) for k, v in daemon_presets.items()}
    except Exception:
        return {"fast": {"iterations": 120}, "balanced": {"iterations": 400},
                "quality": {"iterations": 600}}  # fmt: skip


PRESET_VALUES = load_presets()
PRESET_ITERATIONS = {k: int(v.get("iterations", DEFAULT_ITERATIONS)) for k, v in
                     PRESET_VALUES.items()}  # fmt: skip
#: Seconds per optimiser step per megapixel of working size (fp32, 2 CPU cores: 0.74 s per
#: step at 512x384); replaced by what this computer measured once a job has finished.
DEFAULT_STEP_S_PER_MPX = 3.8
#: Coarse-to-fine presets spend part of their steps at smaller sizes.
LADDER_FACTOR = 0.65


def estimate_seconds(preset: str, work_side: int, iterations: int, speed: float | None) -> float:
    """Expected job time: steps x working megapixels (4:3) x seconds per step and Mpx."""
    steps = PRESET_ITERATIONS.get(preset, iterations)
    mpx = work_side * work_side * 0.75 / 1e6
    factor = LADDER_FACTOR if preset in PRESET_ITERATIONS and not speed else 1.0
    return steps * mpx * (speed or DEFAULT_STEP_S_PER_MPX) * factor


def about(seconds: float) -> str:
    """'about 40 s', 'about 3 min', 'about 1 h 10 min' (what a person reads)."""
    if seconds < 55:
        return f"about {max(5, round(seconds / 5) * 5)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def estimate_text(preset: str, max_size: int, iterations: int, speed: float | None) -> str:
    """The dialog's line under the preset."""
    when = "on this computer" if speed else "estimated for a 2-core CPU"
    return f"Expected time: {about(estimate_seconds(preset, max_size, iterations, speed))} ({when})"


def measured_speed(stats: dict[str, Any] | None) -> float | None:
    """Seconds per step per megapixel from a finished job's statistics (None if unknown)."""
    try:
        w, h = stats["work_size"]
        value = float(stats["elapsed_s"]) / (int(stats["steps"]) * w * h / 1e6)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return value if value == value and value > 0 else None


PRESETS = ("custom", *PRESET_ITERATIONS)
#: What a first OK runs: the quickest preset (minutes, not tens of minutes, on a laptop CPU).
DEFAULT_PRESET = "fast"
COLOR_MODES = ("luminance", "histogram")
PREVIEW_SIDE = 256
CANVAS_PREVIEW_MAX = 1024
#: Poll period of the interactive progress window (ms); the client's heartbeats ride on it.
POLL_MS = 50


def vendor_dir(base: str = PLUGIN_DIR, version: tuple[int, ...] = tuple(sys.version_info)) -> str:
    """vendor/py3XX beside the plug-in: wheels unpacked for exactly this Python version."""
    return os.path.join(base, "vendor", f"py{version[0]}{version[1]}")


def setup_import_path(base: str = PLUGIN_DIR) -> str | None:
    """Put this Python's vendored wheels and the bundled package first on sys.path.

    Returns the vendor folder used, or None (then system pyzmq/msgpack are the fallback).
    """
    if base not in sys.path:
        sys.path.insert(0, base)
    vdir = vendor_dir(base)
    if os.path.isdir(vdir):
        if vdir in sys.path:
            sys.path.remove(vdir)
        sys.path.insert(0, vdir)
        return vdir
    return None


class PluginError(Exception):
    """A failure shown to the user as is: the text says what to do about it."""


class UserCancelled(Exception):
    """The user pressed Cancel (or closed the progress window)."""


class StoppedAndKept(UserCancelled):
    """The user pressed "Stop and keep": the job stopped, its latest image is to be kept."""

    def __init__(self, preview: Any, step: int, total: int) -> None:
        super().__init__("stopped and kept")
        self.preview, self.step, self.total = preview, step, total


#: Response id of the progress window's "Stop and keep" button.
RESPONSE_KEEP = 1


# --------------------------------------------------------------------------- logging for tests


def log_event(event: str, **fields: Any) -> None:
    """Append one JSON line to $NEURAL_STYLE_PLUGIN_LOG (no-op when unset).

    Headless GIMP shows neither progress nor messages; tests read this instead.
    """
    path = os.environ.get("NEURAL_STYLE_PLUGIN_LOG")
    if not path:
        return
    record = {"t": round(time.time(), 3), "event": event, **fields}
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
    except OSError:
        pass


# --------------------------------------------------------------------------- pure helpers


def style_weights(strength: float) -> tuple[float, float]:
    """style-strength -> (content_weight, style_weight).

    The content weight stays at the engine default (1e4) and the style weight is
    1e-2 x strength, so strength 1 is the engine's default balance, 2 doubles the style's
    pull, 0.5 halves it, 0 reproduces the content (smoothed a little by the TV term).
    """
    strength = max(0.0, min(float(strength), MAX_STRENGTH))
    return BASE_CONTENT_WEIGHT, BASE_STYLE_WEIGHT * strength


def blend_weights(blend: float) -> list[float]:
    """style-blend (the second style's share, 0..1) -> the engine's style_blend [1-b, b]."""
    b = max(0.0, min(float(blend), 1.0))
    return [round(1.0 - b, 6), round(b, 6)]


def build_params(
    iterations: int,
    max_size: int,
    strength: float,
    preserve_color: bool = False,
    *,
    color_mode: str = "luminance",
    preset: str = "custom",
    style_scale: float = DEFAULT_STYLE_SCALE,
    blend: float | None = None,
) -> dict[str, Any]:
    """The job's parameter dict (keys are daemon/params.py StyleParams fields, plus preset).

    * preserve-color turns colour preservation on, in ``color_mode`` ("luminance": only the
      style's luminance is transferred; "histogram": the style's colours are matched to the
      content's first);
    * ``preset`` other than "custom" sends ``preset`` and no ``iterations``: the daemon's
      preset then chooses the optimiser, the coarse-to-fine ladder and the iteration count,
      while ``size`` (max-size) stays the working size the user chose;
    * ``style_scale`` sizes the style relative to the working size (brush-stroke size);
    * ``blend`` (only with a second style) is the second style's share: style_blend [1-b, b].

    Keys are only sent when they differ from the engine's defaults, so a daemon predating a
    control still accepts the jobs that do not use it.
    """
    content_weight, style_weight = style_weights(strength)
    params: dict[str, Any] = {
        "iterations": int(iterations),
        "size": max(MIN_MAX_SIZE, min(int(max_size), MAX_MAX_SIZE)),
        "content_weight": content_weight,
        "style_weight": style_weight,
        "keep_size": True,
    }
    if preserve_color:
        if color_mode not in COLOR_MODES:
            raise PluginError(
                f"Unknown colour mode {color_mode!r}; choose one of {', '.join(COLOR_MODES)}."
            )
        params["preserve_color"] = color_mode
    preset = preset or "custom"
    if preset != "custom":
        if preset not in PRESET_ITERATIONS:
            raise PluginError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
        params["preset"] = preset
        del params["iterations"]
    scale = max(MIN_STYLE_SCALE, min(float(style_scale), MAX_STYLE_SCALE))
    if abs(scale - 1.0) > 1e-9:
        params["style_scale"] = round(scale, 6)
    if blend is not None:
        params["style_blend"] = blend_weights(blend)
    return params


def effective_iterations(params: dict[str, Any]) -> int:
    """Steps the daemon will run: explicit iterations, else the preset's."""
    if "iterations" in params:
        return int(params["iterations"])
    return PRESET_ITERATIONS.get(params.get("preset", ""), DEFAULT_ITERATIONS)


def job_settings(config: Any) -> dict[str, Any]:
    """Read the procedure's config into what the job needs.

    Returns ``params``, ``styles`` (one or two style layers), ``endpoint``, ``max_size``,
    ``style_scale`` and ``iterations`` (the effective step count). The second style is used
    when it is set and style-blend > 0 (blend 0 = its share is nothing: not sent at all).
    """
    style_layer: Any = config.get_property("style-layer")
    if style_layer is None:
        path = _style_file(config)
        if not path:
            raise PluginError(
                "Choose a style: a layer of any open image, or a painting with "
                "\u201cOpen painting\u2026\u201d."
            )
        style_layer = StyleFile(path)
    second = config.get_property("style-layer-2")
    blend = float(config.get_property("style-blend"))
    styles = [style_layer]
    if second is not None and blend > 0:
        styles.append(second)
    max_size = int(config.get_property("max-size"))
    style_scale = float(config.get_property("style-scale"))
    params = build_params(
        int(config.get_property("iterations")),
        max_size,
        float(config.get_property("style-strength")),
        bool(config.get_property("preserve-color")),
        color_mode=str(config.get_property("color-mode") or "luminance"),
        preset=str(config.get_property("preset") or "custom"),
        style_scale=style_scale,
        blend=blend if len(styles) == 2 else None,
    )
    params.update(extra_params())
    return {
        "params": params,
        "styles": styles,
        "endpoint": (config.get_property("endpoint") or "").strip(),
        "max_size": max_size,
        "style_scale": style_scale,
        "iterations": effective_iterations(params),
    }


class StyleFile:
    """A style painting to load from a file (the style-file argument)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def _style_file(config: Any) -> str:
    """style-file's path ('' when unset; a GFile in GIMP, a string in tests)."""
    try:
        value = config.get_property("style-file")
    except (KeyError, TypeError):
        return ""
    if value is None:
        return ""
    path = value.get_path() if hasattr(value, "get_path") else str(value)
    return path or ""


#: babl sample type -> (ImageBuf dtype, bytes per sample)
_SAMPLES = {"u8": ("u8", 1), "u16": ("u16", 2), "float": ("f32", 4)}
_DTYPE_TO_BABL = {"u8": "u8", "u16": "u16", "f32": "float"}
_CHANNEL_MODELS = {1: "Y'", 2: "Y'A", 3: "R'G'B'", 4: "R'G'B'A"}


def sample_type(precision_nick: str) -> str:
    """babl sample type for a GIMP precision nick ('u8-non-linear', 'half-linear', ...)."""
    nick = precision_nick.lower()
    if nick.startswith("u8"):
        return "u8"
    if nick.startswith(("u16", "u32")):
        return "u16"
    return "float"


def pixel_format(gray: bool, precision_nick: str) -> tuple[str, int, str, int]:
    """(babl format, channels, ImageBuf dtype, bytes per sample) for reading the content."""
    sample = sample_type(precision_nick)
    dtype, bps = _SAMPLES[sample]
    channels = 2 if gray else 4
    return f"{_CHANNEL_MODELS[channels]} {sample}", channels, dtype, bps


def babl_format_for(channels: int, dtype: str) -> str:
    """babl format describing an ImageBuf's bytes (used to write the result back)."""
    try:
        return f"{_CHANNEL_MODELS[channels]} {_DTYPE_TO_BABL[dtype]}"
    except KeyError:
        raise PluginError(
            f"The daemon sent an image with {channels} channels of {dtype!r}, which the "
            "plug-in cannot read. Reinstall the plug-in and the daemon from the same version."
        ) from None


def restore_alpha(result: bytes, original: bytes, channels: int, bps: int) -> bytes:
    """Copy the original's alpha samples into the result (same layout, same size).

    The daemon keeps alpha itself; doing it here as well makes "alpha is kept" hold exactly,
    whatever resampling happened on the way.
    """
    if channels not in (2, 4) or len(result) != len(original):
        return result
    out = bytearray(result)
    stride = channels * bps
    first = (channels - 1) * bps
    for k in range(bps):
        out[first + k :: stride] = original[first + k :: stride]
    return bytes(out)


def is_opaque_mask(mask: bytes) -> bool:
    """True when every mask sample is 255 (a rectangular selection): no need to send it."""
    return mask.count(255) == len(mask)


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size scaled down (never up) so that the long side is at most ``max_side``."""
    long_side = max(width, height)
    if long_side <= max_side:
        return width, height
    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def format_eta(seconds: float | None) -> str:
    """'About 1 min 5 s left' style text; empty when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"About {seconds} s left"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"About {minutes} min {secs:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"About {hours} h {minutes:02d} min left"


def progress_note(step: int, total: int, eta_s: float | None) -> str:
    """The progress window's second line: the time left, in words (no optimiser figures)."""
    if step >= total:
        return "Finishing…"
    if eta_s is None or eta_s != eta_s or eta_s <= 0:
        return "Estimating the time left…"
    return format_eta(eta_s)


def to_rgb8(width: int, height: int, channels: int, dtype: str, data: bytes) -> bytes:
    """Any ImageBuf layout -> packed RGB u8 (for the preview thumbnail; small images only)."""
    n = width * height * channels
    if dtype == "u8":
        samples: Any = data[:n]
    elif dtype == "u16":
        samples = bytes(v >> 8 for v in struct.unpack(f"<{n}H", data[: 2 * n]))
    elif dtype == "f32":
        samples = bytes(
            0 if v != v else max(0, min(255, int(v * 255.0 + 0.5)))
            for v in struct.unpack(f"<{n}f", data[: 4 * n])
        )
    else:
        raise PluginError(f"unknown preview sample type {dtype!r}")
    if channels == 3:
        return bytes(samples)
    out = bytearray(width * height * 3)
    if channels == 4:
        for c in range(3):
            out[c::3] = samples[c::4]
    elif channels in (1, 2):
        gray = samples[0::channels]
        for c in range(3):
            out[c::3] = gray
    else:
        raise PluginError(f"unknown preview channel count {channels}")
    return bytes(out)


class Throttle:
    """True at most every ``interval`` seconds (and always for the final step)."""

    def __init__(self, interval: float = 0.2, clock=time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last = -1e9

    def ready(self, final: bool = False) -> bool:
        now = self.clock()
        if final or now - self.last >= self.interval:
            self.last = now
            return True
        return False


def extra_params(raw: str | None = None) -> dict[str, Any]:
    """$NEURAL_STYLE_EXTRA_PARAMS as a dict (empty when unset); PluginError when malformed."""
    raw = os.environ.get("NEURAL_STYLE_EXTRA_PARAMS", "") if raw is None else raw
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise PluginError(f"NEURAL_STYLE_EXTRA_PARAMS is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PluginError('NEURAL_STYLE_EXTRA_PARAMS must be a JSON object, e.g. {"seed": 1}.')
    return value


# --------------------------------------------------------------------------- re-runs

#: Remembered across runs in GIMP's profile folder, whatever the outcome (GIMP itself keeps
#: the last values only after a successful run, and never keeps layer arguments).
SETTINGS_FILE = "neural-style.json"
SAVED_KEYS = (
    "iterations", "max-size", "style-strength", "preserve-color", "endpoint", "style-blend",
    "style-scale", "preset", "color-mode",
)  # fmt: skip
#: Suffix of every result layer's name (so a re-run never takes a result as the style).
RESULT_SUFFIX = " (Neural Style)"
PREVIEW_LAYER_NAME = "Neural Style preview"


def load_settings(path: str) -> dict[str, Any]:
    """The remembered settings ({} when missing or unreadable: never an error)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(path: str, data: dict[str, Any]) -> None:
    """Write the settings atomically (a crash mid-write keeps the previous file)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=str)
        os.replace(tmp, path)
    except OSError as exc:
        log_event("settings_not_saved", error=repr(exc))
        with contextlib.suppress(OSError):
            os.remove(tmp)


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a.get_id() == b.get_id()


def _usable(layer: Any, drawable: Any) -> bool:
    return (
        layer is not None
        and bool(layer.is_valid())
        and not _same(layer, drawable)
        and not layer.get_name().endswith(RESULT_SUFFIX)
        and layer.get_name() != PREVIEW_LAYER_NAME
    )


def remembered_style(layer: Any, image: Any) -> dict[str, Any]:
    """What is kept of a style layer to find it again: its image, tattoo and name."""
    return {"image": image.get_id(), "tattoo": layer.get_tattoo(), "name": layer.get_name()}


def pick_style_layer(
    image: Any, drawable: Any, images: list[Any], memory: dict[str, Any] | None
) -> tuple[Any, str]:
    """The style layer for a re-run without one: (layer, how) or (None, "").

    In order: the remembered layer (same image and tattoo), a layer of the remembered name in
    this image, then in any open image, else the topmost visible layer of this image other
    than the one being stylized (and other than earlier results).
    """
    memory = memory or {}
    others = [img for img in images if not _same(img, image)]
    if memory.get("tattoo") is not None:
        for img in [image, *others]:
            if img.get_id() == memory.get("image"):
                layer = img.get_layer_by_tattoo(int(memory["tattoo"]))
                if _usable(layer, drawable):
                    return layer, "remembered"
    name = memory.get("name")
    if name:
        for img in [image, *others]:
            layer = img.get_layer_by_name(name)
            if _usable(layer, drawable):
                return layer, "remembered by name"
    for layer in image.get_layers():
        if layer.get_visible() and _usable(layer, drawable):
            return layer, "topmost visible layer"
    return None, ""


# --------------------------------------------------------------------------- errors -> messages


def start_command(endpoint: str) -> str:
    """The exact command that starts a daemon this plug-in would reach."""
    return " ".join(serve_command(endpoint))


def describe_error(exc: BaseException, endpoint: str = "") -> str:
    """Turn a client/daemon exception into a message that says what to do next."""
    code = getattr(getattr(exc, "code", None), "value", getattr(exc, "code", None))
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", "") or ""
    kind = type(exc).__name__
    start = start_command(endpoint)
    if kind == "DaemonDied":
        text = (
            "The Neural Style daemon stopped answering in the middle of the job (it crashed or "
            f"was stopped). Restart it with:\n    {start}\nthen run the filter again."
        )
    elif kind == "DaemonUnavailable" or code == "daemon_unavailable":
        where = f" at {endpoint}" if endpoint else ""
        text = f"The Neural Style daemon is not running{where}. Start it with:\n    {start}"
    elif code == "weights_missing":
        text = (
            "The Neural Style daemon has no VGG-19 weights. Download them with:\n    "
            f"{FETCH_WEIGHTS_COMMAND}\nthen restart the daemon ({START_COMMAND})."
        )
    elif code == "too_large":
        text = (
            "The image is too large for the daemon. Lower 'Max size', select a smaller area, "
            "or scale the image down."
        )
    elif code == "version_mismatch":
        text = (
            "The plug-in and the daemon are different versions. Reinstall the plug-in from "
            f"the daemon's installation with:\n    {REINSTALL_COMMAND}\nand restart the daemon."
        )
    elif code == "out_of_memory":
        text = "The daemon ran out of memory. Lower 'Max size' and try again."
    elif code == "busy":
        text = "The daemon is busy with other jobs (its queue is full). Try again shortly."
    elif code == "unauthenticated":
        text = (
            "The daemon refused the plug-in's key. Restart the daemon, and make sure GIMP sees "
            "its connection file (set NEURAL_STYLE_CONNECTION_FILE for GIMP if it runs "
            "sandboxed)."
        )
    elif code == "timeout":
        text = (
            "The daemon did not answer in time. Check it with 'neural-style status', or "
            f"restart it:\n    {start}"
        )
    else:
        text = "Neural Style failed."
        if hint and hint not in message:
            message = f"{message}\n{hint}"
    return f"{text}\nDetails: {message}"


def load_client() -> Any:
    """Import the bundled client module; PluginError telling how to reinstall if it can't."""
    vdir = setup_import_path()
    try:
        import msgpack  # noqa: F401
        import zmq  # noqa: F401
    except ImportError as exc:
        ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
        raise PluginError(
            f"Neural Style needs pyzmq and msgpack, which GIMP's Python {ver} cannot import "
            f"({exc}). Reinstall the plug-in so it bundles them for this Python:\n    "
            f"{REINSTALL_COMMAND}\n(or install them for GIMP's Python, e.g. on Debian/Ubuntu: "
            "apt install python3-zmq python3-msgpack)."
        ) from None
    errors: list[str] = []
    for name in (f"{SHARED_PACKAGE}.client", "neural_style.shared.client"):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        log_event("client", module=module.__file__, zmq=sys.modules["zmq"].__file__, vendor=vdir)
        return module
    raise PluginError(
        "The plug-in's bundled client package is missing or broken "
        f"({'; '.join(errors)}). Reinstall the plug-in with:\n    {REINSTALL_COMMAND}"
    )


# --------------------------------------------------------------------------- job driving


def check_size(width: int, height: int, hello: dict[str, Any] | None) -> None:
    """PluginError (before anything is read) when the area exceeds the daemon's max_pixels."""
    limits = (hello or {}).get("limits") or {}
    max_pixels = int(limits.get("max_pixels") or 0)
    if max_pixels and width * height > max_pixels:
        side = int(max_pixels**0.5)
        raise PluginError(
            f"The area is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); the "
            f"Neural Style daemon takes at most {max_pixels / 1e6:.1f} megapixels (about "
            f"{side}x{side}). Select a smaller area or scale the image down (Image ▸ Scale "
            "Image); the result is painted at Max size anyway."
        )


def installed_info(base: str = PLUGIN_DIR) -> dict[str, Any]:
    """INSTALLED.json written by install-plugin ({} in a checkout)."""
    return load_settings(os.path.join(base, "INSTALLED.json"))


def serve_command(endpoint: str, base: str = PLUGIN_DIR) -> list[str]:
    """The command that starts the daemon the plug-in would reach: the one install-plugin
    recorded (this installation's neural-style), with --bind for a chosen endpoint."""
    command = list(installed_info(base).get("serve_command") or START_COMMAND.split())
    return [*command, "--bind", endpoint] if endpoint else command


def start_daemon(command: list[str], log_path: str) -> Any:
    """Start the daemon detached from GIMP (it keeps running after the plug-in exits)."""
    import subprocess

    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )  # fmt: skip


def _is_unavailable(exc: BaseException, client_mod: Any) -> bool:
    """Not running at all (as opposed to died mid-job, or any other error)."""
    unavailable = getattr(client_mod, "DaemonUnavailable", None)
    died = getattr(client_mod, "DaemonDied", None)
    return (
        unavailable is not None
        and isinstance(exc, unavailable)
        and not (died is not None and isinstance(exc, died))
    )


def connect(
    client_mod: Any, endpoint: str, timeout: float, interactive: bool, ui: Any = None
) -> tuple[Any, dict[str, Any]]:
    """A connected client and the daemon's hello. When no daemon answers and a person is
    there, offer to start it, wait for it to load its model, and go on with the job."""
    try:
        client = client_mod.Client(endpoint or None, timeout=timeout)
        try:
            return client, client.hello()
        except BaseException:
            client.close()
            raise
    except Exception as exc:
        if not (interactive and _is_unavailable(exc, client_mod)):
            raise
        command = serve_command(endpoint)
        ui = ui or _gtk_ui()
        if not ask_to_start(ui, command):
            log_event("autostart_declined")
            raise
    log_path = os.path.join(_log_dir(), "neural-style-daemon.log")
    log_event("autostart", command=command, log=log_path)
    proc = start_daemon(command, log_path)
    wait_for_daemon(ui, client_mod, endpoint, proc, log_path)
    client = client_mod.Client(endpoint or None, timeout=timeout)
    return client, client.hello()


def _log_dir() -> str:
    import tempfile

    return os.environ.get("XDG_STATE_HOME") or tempfile.gettempdir()


#: How long a starting daemon may take to load TensorFlow and VGG-19 (seconds).
START_TIMEOUT_S = 120.0


def ask_to_start(ui: Any, command: list[str]) -> bool:
    """'The Neural Style service is not running. Start it now?' (Start / Cancel)."""
    Gtk = ui.Gtk
    dialog = ui.GimpUi.Dialog(title="Neural Style", role=PROC_NAME, modal=True)
    dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    dialog.add_button("_Start it", Gtk.ResponseType.OK)
    box = dialog.get_content_area()
    box.set_border_width(12)
    box.set_spacing(6)
    label = Gtk.Label(label=(
        "The Neural Style service is not running.\nStart it now? It keeps running in the "
        f"background for the next pictures.\n\nCommand: {' '.join(command)}"
    ))  # fmt: skip
    label.set_xalign(0.0)
    label.set_line_wrap(True)
    box.pack_start(label, False, False, 0)
    dialog.show_all()
    answer = dialog.run()
    dialog.destroy()
    return answer == Gtk.ResponseType.OK


def wait_for_daemon(
    ui: Any, client_mod: Any, endpoint: str, proc: Any, log_path: str,
    clock=time.monotonic,
) -> None:  # fmt: skip
    """'Starting… loading the model' until the new daemon answers (PluginError if it exits
    or takes longer than START_TIMEOUT_S; UserCancelled on Cancel)."""
    Gtk, GLib = ui.Gtk, ui.GLib
    dialog = ui.GimpUi.Dialog(title="Neural Style", role=PROC_NAME, modal=True)
    dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
    box = dialog.get_content_area()
    box.set_border_width(12)
    box.set_spacing(6)
    label = Gtk.Label(label="Starting the Neural Style service… loading the model")
    bar = Gtk.ProgressBar()
    box.pack_start(label, False, False, 0)
    box.pack_start(bar, False, False, 0)
    state: dict[str, Any] = {"outcome": None}
    loop = GLib.MainLoop()
    started = clock()

    def tick() -> bool:
        bar.pulse()
        if proc.poll() is not None:
            state["outcome"] = "exited"
        elif clock() - started > START_TIMEOUT_S:
            state["outcome"] = "slow"
        else:
            try:
                with client_mod.Client(endpoint or None, timeout=0.5) as probe:
                    probe.ping()
                state["outcome"] = "ready"
            except Exception:
                return True
        loop.quit()
        return False

    def cancel(*_args: Any) -> bool:
        state["outcome"] = "cancelled"
        loop.quit()
        return True

    dialog.connect("response", cancel)
    dialog.connect("delete-event", cancel)
    dialog.show_all()
    GLib.timeout_add(500, tick)
    loop.run()
    dialog.destroy()
    log_event("autostart_result", outcome=state["outcome"])
    if state["outcome"] == "cancelled":
        raise UserCancelled()
    if state["outcome"] != "ready":
        what = "stopped" if state["outcome"] == "exited" else "did not answer in time"
        raise PluginError(
            f"The Neural Style service {what} while starting. Its messages are in {log_path}."
        )


def canvas_preview_side(width: int, height: int) -> int:
    """Long side of the previews asked for: the area's, within [256, 1024] (the daemon never
    sends more than its working size); GIMP upscales them onto the canvas."""
    return max(PREVIEW_SIDE, min(max(width, height), CANVAS_PREVIEW_MAX))


def run_job_blocking(job: Any, on_progress=None, on_preview=None, poll_ms: int = 100) -> Any:
    """Poll a job until Done; returns the Done event. Raises on errors, UserCancelled on cancel."""
    while True:
        for event in job.poll(timeout_ms=poll_ms):
            kind = type(event).__name__
            if kind == "Progress" and on_progress:
                on_progress(event)
            elif kind == "Preview" and on_preview:
                on_preview(event)
            elif kind == "Done":
                return event
            elif kind == "Cancelled":
                raise UserCancelled()


class ProgressWindow:
    """The interactive progress dialog: status, step x/y bar, ETA, preview, Cancel.

    Polls the job from a GLib timeout on the main thread (the ZeroMQ socket is never touched
    from another thread) and runs a nested main loop until the job ends. ``ui`` carries the
    modules (GimpUi, Gtk, GLib, GdkPixbuf) so unit tests can hand in fakes.
    """

    CANCEL_GRACE_S = 5.0

    def __init__(
        self, ui: Any, job: Any, total: int, title: str = "Neural Style", on_preview: Any = None
    ) -> None:
        self.ui = ui
        self.job = job
        self.on_preview = on_preview  # e.g. the canvas preview layer
        self.total = max(1, int(total))
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.cancel_requested_at: float | None = None
        self.loop: Any = None
        self.source_id: int | None = None
        Gtk = ui.Gtk
        self.dialog = ui.GimpUi.Dialog(title=title, role=PROC_NAME, modal=True)
        self.keep_requested = False
        self.last_preview: Any = None
        self.step = 0
        self.dialog.add_button("_Stop and keep", RESPONSE_KEEP)
        self.dialog.set_response_sensitive(RESPONSE_KEEP, False)  # until there is an image
        self.dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.dialog.set_default_size(360, -1)
        box = self.dialog.get_content_area()
        box.set_spacing(6)
        box.set_border_width(12)
        self.status = Gtk.Label(label="Connecting to the Neural Style daemon…")
        self.status.set_xalign(0.0)
        self.bar = Gtk.ProgressBar()
        self.bar.set_show_text(True)
        self.bar.set_text(f"Step 0 / {self.total}")
        self.eta = Gtk.Label(label="")
        self.eta.set_xalign(0.0)
        self.preview = Gtk.Image()
        self.preview.set_size_request(PREVIEW_SIDE, PREVIEW_SIDE)
        for widget in (self.status, self.bar, self.eta, self.preview):
            box.pack_start(widget, False, False, 0)
        self.dialog.connect("response", self._on_response)
        self.dialog.connect("delete-event", self._on_delete)

    # -- events
    def handle(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "Accepted":
            position = getattr(event, "position", 0) or 0
            self.status.set_text(
                f"Waiting in the daemon's queue (position {position})…"
                if position > 0
                else "Stylizing…"
            )
        elif kind == "Progress":
            step, total = int(event.step), int(event.total or self.total)
            self.step = step
            self.total = max(1, total)
            self.bar.set_fraction(min(1.0, step / self.total))
            self.bar.set_text(f"Step {step} / {self.total}")
            if self.cancel_requested_at is None:
                self.status.set_text("Stylizing…")
            self.eta.set_text(progress_note(step, self.total, getattr(event, "eta_s", None)))
        elif kind == "Preview":
            self.last_preview = event.image
            if self.cancel_requested_at is None:
                self.dialog.set_response_sensitive(RESPONSE_KEEP, True)
            self.show_preview(event.image)
            if self.on_preview is not None:
                try:
                    self.on_preview(event.image)
                except Exception as exc:  # a preview must never end the job
                    log_event("canvas_preview_failed", error=repr(exc))
        elif kind == "Done":
            self.result = event
            self.bar.set_fraction(1.0)
            self.bar.set_text(f"Step {self.total} / {self.total}")
            self.quit()
        elif kind == "Cancelled":
            self.cancelled = True
            self.quit()

    def show_preview(self, image: Any) -> None:
        GdkPixbuf, GLib = self.ui.GdkPixbuf, self.ui.GLib
        rgb = to_rgb8(image.width, image.height, image.channels, image.dtype, image.data)
        pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(
            GLib.Bytes.new(rgb), GdkPixbuf.Colorspace.RGB, False, 8,
            image.width, image.height, image.width * 3,
        )  # fmt: skip
        w, h = fit_within(image.width, image.height, PREVIEW_SIDE)
        if (w, h) != (image.width, image.height):
            pixbuf = pixbuf.scale_simple(w, h, GdkPixbuf.InterpType.BILINEAR)
        self.preview.set_from_pixbuf(pixbuf)

    # -- main loop plumbing
    def tick(self) -> bool:
        """GLib timeout callback: poll, dispatch; False removes the timeout."""
        try:
            for event in self.job.poll(timeout_ms=0):
                self.handle(event)
                if self.loop is None:
                    return False
        except Exception as exc:
            self.error = exc
            self.quit()
            return False
        if (
            self.cancel_requested_at is not None
            and time.monotonic() - self.cancel_requested_at > self.CANCEL_GRACE_S
        ):
            self.cancelled = True  # daemon never confirmed; stop waiting for it
            self.quit()
            return False
        return self.loop is not None

    def request_cancel(self) -> None:
        if self.cancel_requested_at is not None:
            return
        self.cancel_requested_at = time.monotonic()
        self.status.set_text("Stopping…" if self.keep_requested else "Cancelling…")
        self.dialog.set_response_sensitive(self.ui.Gtk.ResponseType.CANCEL, False)
        self.dialog.set_response_sensitive(RESPONSE_KEEP, False)
        try:
            self.job.cancel()
        except Exception as exc:  # the daemon is gone: nothing left to cancel
            log_event("cancel_failed", error=repr(exc))
            self.cancelled = True
            self.quit()

    def _on_response(self, _dialog: Any, response: int) -> None:
        if response == RESPONSE_KEEP and self.last_preview is not None:
            self.keep_requested = True
        self.request_cancel()

    def _on_delete(self, *_args: Any) -> bool:
        self.request_cancel()
        return True  # keep the window until the daemon confirms

    def quit(self) -> None:
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.quit()

    def run(self) -> Any:
        """Show the window until the job ends; returns Done, raises the error or UserCancelled."""
        GLib = self.ui.GLib
        self.loop = GLib.MainLoop()
        self.dialog.show_all()
        self.source_id = GLib.timeout_add(POLL_MS, self.tick)
        try:
            self.loop.run()
        finally:
            self.loop = None
            self.dialog.destroy()
        if self.error is not None:
            raise self.error
        if self.result is not None:
            return self.result
        if self.keep_requested and self.last_preview is not None:
            raise StoppedAndKept(self.last_preview, self.step, self.total)
        raise UserCancelled()


# --------------------------------------------------------------------------- GIMP side

import gi  # noqa: E402  (after the pure helpers so unit tests can import them with a fake gi)

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject  # noqa: E402


def _precision_nick(image: Any) -> str:
    precision = image.get_precision()
    return str(getattr(precision, "value_nick", precision)).lower().replace("gimp_precision_", "")


def _read(
    drawable: Any, x: int, y: int, w: int, h: int, fmt: str, scale: float = 1.0,
    abyss: Any = None,
) -> bytes:  # fmt: skip
    buf = drawable.get_buffer()
    policy = Gegl.AbyssPolicy.CLAMP if abyss is None else abyss
    data = buf.get(Gegl.Rectangle.new(x, y, w, h), scale, fmt, policy)
    return bytes(data)


class ContentArea:
    """What was read from the content layer, and where the result must go."""

    def __init__(self, image: Any, drawable: Any) -> None:
        if not isinstance(drawable, Gimp.Layer) or isinstance(drawable, Gimp.LayerMask):
            raise PluginError("Select the layer to stylize (not a channel or a mask).")
        self.gray = bool(drawable.is_gray())
        self.has_selection = not Gimp.Selection.is_empty(image)
        ok, x, y, w, h = drawable.mask_intersect()
        if not ok or w <= 0 or h <= 0:
            raise PluginError("The selection does not overlap the active layer.")
        self.x, self.y, self.w, self.h = x, y, w, h
        _, ox, oy = drawable.get_offsets()
        self.offsets = (ox + x, oy + y)
        self.fmt, self.channels, self.dtype, self.bps = pixel_format(
            self.gray, _precision_nick(image)
        )
        self.data = b""
        self.mask: bytes | None = None

    def read(self, image: Any, drawable: Any) -> None:
        """Read the pixels (and selection mask), once the size has been checked."""
        self.data = _read(drawable, self.x, self.y, self.w, self.h, self.fmt)
        if self.has_selection:
            self.mask = read_selection_mask(image, *self.offsets, self.w, self.h)


def read_selection_mask(image: Any, x: int, y: int, w: int, h: int) -> bytes | None:
    """The selection over an image-space rectangle as 8-bit gray ("Y u8": GIMP's linear
    coverage, the same values a layer mask from the selection gets), or None when it is fully
    selected there. Feathered and antialiased edges keep their intermediate values."""
    mask = _read(image.get_selection(), x, y, w, h, "Y u8", abyss=Gegl.AbyssPolicy.NONE)
    return None if is_opaque_mask(mask) else mask


def read_style(layer: Any, max_size: int, style_scale: float = 1.0) -> tuple[int, int, bytes]:
    """Style layer as RGB u8, scaled down by GEGL to at most max(2, style-scale) x max-size
    on the long side (the daemon resizes it to style-scale x its working size)."""
    w, h = layer.get_width(), layer.get_height()
    factor = max(2.0, float(style_scale))
    cap = min(max(round(factor * int(max_size)), PREVIEW_SIDE), 2 * MAX_MAX_SIZE)
    sw, sh = fit_within(w, h, cap)
    scale = sw / w if (sw, sh) != (w, h) else 1.0
    return sw, sh, _read(layer, 0, 0, sw, sh, "R'G'B' u8", scale)


class CanvasPreview:
    """The daemon's latest preview as a temporary top layer over the area being stylized,
    upscaled by GIMP to the area's size. Kept out of the undo history (undo frozen around
    each change); removed at the end, whatever the outcome."""

    def __init__(self, image: Any, area: ContentArea) -> None:
        self.image, self.area, self.layer = image, area, None
        self.shown = 0

    def show(self, preview: Any) -> None:
        image, area = self.image, self.area
        if not image.is_valid():
            return
        rgb = to_rgb8(preview.width, preview.height, preview.channels, preview.dtype,
                      preview.data)  # fmt: skip
        kind = Gimp.ImageType.GRAY_IMAGE if area.gray else Gimp.ImageType.RGB_IMAGE
        image.undo_freeze()
        try:
            layer = Gimp.Layer.new(image, PREVIEW_LAYER_NAME, preview.width, preview.height,
                                   kind, 100.0, Gimp.LayerMode.NORMAL)  # fmt: skip
            image.insert_layer(layer, None, 0)
            buf = layer.get_buffer()
            buf.set(Gegl.Rectangle.new(0, 0, preview.width, preview.height), "R'G'B' u8", rgb)
            buf.flush()
            if (preview.width, preview.height) != (area.w, area.h):
                layer.scale(area.w, area.h, False)
            layer.set_offsets(*area.offsets)
            old, self.layer = self.layer, layer
            if old is not None and old.is_valid():
                image.remove_layer(old)
        finally:
            image.undo_thaw()
        self.shown += 1
        log_event("canvas_preview", n=self.shown, size=[preview.width, preview.height])
        Gimp.displays_flush()

    def remove(self) -> None:
        layer, self.layer = self.layer, None
        if layer is None or not layer.is_valid() or not self.image.is_valid():
            return
        self.image.undo_freeze()
        try:
            self.image.remove_layer(layer)
        finally:
            self.image.undo_thaw()
        log_event("canvas_preview_removed")
        Gimp.displays_flush()


def read_style_file(path: str, max_size: int, style_scale: float) -> tuple[int, int, bytes]:
    """A painting from a file (any format GIMP opens), read like a style layer."""
    if not os.path.isfile(path):
        raise PluginError(f"The style painting {path} does not exist (moved or deleted?).")
    try:
        img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    except Exception as exc:
        raise PluginError(f"GIMP could not open the style painting {path}: {exc}") from None
    if img is None:
        raise PluginError(f"GIMP could not open the style painting {path}.")
    try:
        return read_style(img.flatten(), max_size, style_scale)
    finally:
        img.delete()


def insert_result(image: Any, drawable: Any, area: ContentArea, name: str, done: Any) -> Any:
    """Build the new layer above the content layer in one undo group; returns it."""
    out = done.image
    if (out.width, out.height) != (area.w, area.h):
        raise PluginError(
            f"The daemon returned {out.width}x{out.height} pixels for a {area.w}x{area.h} "
            "area. Reinstall the plug-in and the daemon from the same version."
        )
    fmt = babl_format_for(out.channels, out.dtype)
    data = bytes(out.data)
    if out.channels == area.channels and out.dtype == area.dtype:
        data = restore_alpha(data, area.data, area.channels, area.bps)
    if not image.is_valid() or not drawable.is_valid():
        raise PluginError("The image or layer was closed while Neural Style was working.")
    layer_type = Gimp.ImageType.GRAYA_IMAGE if area.gray else Gimp.ImageType.RGBA_IMAGE
    log_event("undo_group_start")
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(
            image, name, area.w, area.h, layer_type, 100.0, Gimp.LayerMode.NORMAL
        )
        # at the top of the stack, where it is seen (above the style layers)
        image.insert_layer(layer, None, 0)
        layer.set_visible(True)
        layer.set_offsets(*area.offsets)
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, area.w, area.h), fmt, data)
        buf.flush()
        layer.update(0, 0, area.w, area.h)
        if area.has_selection:
            mask = layer.create_mask(Gimp.AddMaskType.SELECTION)
            layer.add_mask(mask)
        log_event("inserted", layer=layer.get_name(), size=[area.w, area.h], offsets=area.offsets)
    finally:
        image.undo_group_end()
        log_event("undo_group_end")
    with contextlib.suppress(Exception):  # selecting it is a convenience, not undoable
        image.set_selected_layers([layer])
    return layer


def insert_kept(image: Any, area: ContentArea, name: str, preview: Any) -> Any:
    """ "Stop and keep": the job's latest image (a preview at up to its working size),
    scaled by GIMP to the area, as the result layer; one undo group, mask as for a result."""
    rgb = to_rgb8(preview.width, preview.height, preview.channels, preview.dtype, preview.data)
    layer_type = Gimp.ImageType.GRAYA_IMAGE if area.gray else Gimp.ImageType.RGBA_IMAGE
    log_event("undo_group_start")
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(image, name, preview.width, preview.height, layer_type, 100.0,
                               Gimp.LayerMode.NORMAL)  # fmt: skip
        image.insert_layer(layer, None, 0)
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, preview.width, preview.height), "R'G'B' u8", rgb)
        buf.flush()
        if (preview.width, preview.height) != (area.w, area.h):
            layer.scale(area.w, area.h, False)
        layer.set_offsets(*area.offsets)
        if area.has_selection:
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        log_event("inserted", layer=name, size=[area.w, area.h], offsets=area.offsets)
    finally:
        image.undo_group_end()
        log_event("undo_group_end")
    return layer


def result_name(content: str, styles: list[str]) -> str:
    """'chelsea in the style of starry_night (Neural Style)'."""
    return f"{content} in the style of {' + '.join(styles)}{RESULT_SUFFIX}"


LAST_SPEED: float | None = None


def stylize(image: Any, drawables: list[Any], config: Any, interactive: bool) -> Any:
    """The whole filter: read, submit, wait, insert. Returns the new layer."""
    if len(drawables) != 1:
        raise PluginError("Select exactly one layer to stylize.")
    drawable = drawables[0]
    job = job_settings(config)
    params, endpoint, iterations = job["params"], job["endpoint"], job["iterations"]
    style_layers = job["styles"]
    log_event("start", params=params, endpoint=endpoint, interactive=interactive,
              styles=len(style_layers))  # fmt: skip

    area = ContentArea(image, drawable)  # geometry only: nothing read yet
    client_mod = load_client()
    timeout = float(os.environ.get("NEURAL_STYLE_TIMEOUT", "10") or 10)
    if not interactive:
        Gimp.progress_init("Neural Style: connecting to the daemon…")
    client = None
    try:
        try:
            client, hello = connect(client_mod, endpoint, timeout, interactive)
            log_event("hello", info=hello)
            check_size(area.w, area.h, hello)  # before reading: 8192² float RGBA is 1 GiB
            area.read(image, drawable)
            ImageBuf = client_mod.ImageBuf
            content = ImageBuf(area.w, area.h, area.channels, area.dtype, area.data)
            styles = []
            for layer in style_layers:
                if isinstance(layer, StyleFile):
                    sw, sh, data = read_style_file(layer.path, job["max_size"], job["style_scale"])
                else:
                    sw, sh, data = read_style(layer, job["max_size"], job["style_scale"])
                styles.append(ImageBuf(sw, sh, 3, "u8", data))
            mask = None if area.mask is None else ImageBuf(area.w, area.h, 1, "u8", area.mask)
            job_handle = client.submit(
                content, styles, params, mask=mask,
                preview_every=max(1, iterations // 30) if interactive else 0,
                preview_max_side=canvas_preview_side(area.w, area.h),
            )  # fmt: skip
            log_event("submitted", content=[area.w, area.h, area.channels, area.dtype],
                      styles=[[s.width, s.height] for s in styles],
                      mask=[area.w, area.h] if mask is not None else None)  # fmt: skip
            if interactive:
                canvas = CanvasPreview(image, area)
                try:
                    done = _run_interactive(job_handle, iterations, canvas.show)
                except StoppedAndKept as kept:
                    done = kept
                finally:
                    canvas.remove()  # on success, cancel and error alike
            else:
                done = _run_batch(job_handle, iterations)
        except (PluginError, UserCancelled):
            raise
        except Exception as exc:
            if _is_client_error(exc, client_mod):
                log_event("error", kind=type(exc).__name__, message=str(exc))
                raise PluginError(describe_error(exc, _shown_endpoint(endpoint, client))) from exc
            raise
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if not interactive:
            Gimp.progress_end()
    log_event("done", stats=getattr(done, "stats", None), kept=isinstance(done, StoppedAndKept))
    global LAST_SPEED
    LAST_SPEED = measured_speed(getattr(done, "stats", None))
    name = result_name(drawable.get_name(), [la.get_name() for la in style_layers])
    if isinstance(done, StoppedAndKept):
        name = name.replace(RESULT_SUFFIX, f" (stopped at step {done.step}){RESULT_SUFFIX}")
        layer = insert_kept(image, area, name, done.preview)
        log_event("kept", step=done.step, total=done.total)
    else:
        layer = insert_result(image, drawable, area, name, done)
    Gimp.displays_flush()
    return layer


def _shown_endpoint(endpoint: str, client: Any) -> str:
    """The endpoint to name in messages: the user's, else a non-default discovered one.

    A daemon found through its connection file on another port must be restarted with
    ``--bind`` that port, or the plug-in would not find it at the same place again.
    """
    if endpoint or client is None:
        return endpoint
    found = getattr(client, "endpoint", "") or ""
    protocol = sys.modules.get(type(client).__module__.rsplit(".", 1)[0] + ".protocol")
    default = getattr(protocol, "DEFAULT_ENDPOINT", None)
    return found if found and found != default else ""


def _is_client_error(exc: BaseException, client_mod: Any) -> bool:
    base = getattr(client_mod, "NeuralStyleError", None)
    if base is None:
        errors = sys.modules.get(client_mod.__name__.rsplit(".", 1)[0] + ".errors")
        base = getattr(errors, "NeuralStyleError", None)
    if base is not None and isinstance(exc, base):
        return True
    return hasattr(exc, "code") and hasattr(exc, "message")


def _run_batch(job: Any, iterations: int) -> Any:
    throttle = Throttle(0.25)

    def on_progress(event: Any) -> None:
        total = int(event.total or iterations)
        final = event.step >= total
        log_event("progress", step=event.step, total=total)
        if throttle.ready(final):
            Gimp.progress_update(min(1.0, event.step / max(1, total)))
            Gimp.progress_set_text(
                f"Neural Style: step {event.step} / {total}. {format_eta(event.eta_s)}"
            )

    return run_job_blocking(job, on_progress=on_progress)


_UI_READY = False


def _gtk_ui() -> Any:
    """The GTK modules the windows use (GimpUi initialised once per process)."""
    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    gi.require_version("GdkPixbuf", "2.0")
    from gi.repository import GdkPixbuf, GimpUi, Gtk

    global _UI_READY
    if not _UI_READY:  # Repeat (Ctrl+F) shows no dialog, so nothing initialised GimpUi yet
        GimpUi.init(PROC_NAME)
        _UI_READY = True

    class UI:
        pass

    ui = UI()
    ui.GimpUi, ui.Gtk, ui.GLib, ui.GdkPixbuf = GimpUi, Gtk, GLib, GdkPixbuf
    return ui


def _run_interactive(job: Any, iterations: int, on_preview: Any = None) -> Any:
    return ProgressWindow(_gtk_ui(), job, iterations, on_preview=on_preview).run()


def settings_path() -> str:
    return os.path.join(Gimp.directory(), SETTINGS_FILE)


def prepare_rerun(image: Any, drawables: list[Any], config: Any) -> dict[str, Any]:
    """Before a dialog/Re-Show/Repeat: restore the remembered settings into the config and
    choose the style layer GIMP forgot (see pick_style_layer); returns the settings."""
    settings = load_settings(settings_path())
    for key, value in (settings.get("values") or {}).items():
        if key in SAVED_KEYS:
            with contextlib.suppress(Exception):  # a value from an older version
                config.set_property(key, value)
    if config.get_property("style-layer") is None and not _style_file(config):
        memory = settings.get("style") or {}
        if memory.get("file"):  # even when missing now: the dialog shows what was chosen
            config.set_property("style-file", Gio.File.new_for_path(memory["file"]))
            log_event("style_resolved", how="remembered painting", file=memory["file"])
            return settings
        drawable = drawables[0] if len(drawables) == 1 else None
        layer, how = pick_style_layer(image, drawable, list(Gimp.get_images()), memory)
        if layer is not None:
            config.set_property("style-layer", layer)
        log_event("style_resolved", how=how, layer=layer.get_name() if layer else None)
    return settings


def remember(settings: dict[str, Any], image: Any, config: Any) -> None:
    """Save the dialog's values and the style choice now, before the job can fail."""
    settings["values"] = {key: config.get_property(key) for key in SAVED_KEYS}
    layer = config.get_property("style-layer")
    if layer is not None:
        settings["style"] = remembered_style(layer, layer.get_image())
    elif _style_file(config):
        settings["style"] = {"file": _style_file(config)}
    save_settings(settings_path(), settings)


def has_display() -> bool:
    """Whether windows can be shown (always in GIMP's GUI; not in gimp-console)."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    try:
        return bool(Gtk.init_check()[0])
    except Exception:
        return False


#: The settings dialog, top to bottom: what an artist changes first; engine settings and the
#: daemon's address under a collapsed "Advanced" (the procedure's argument order differs:
#: new arguments are appended there so positional callers keep working).
DIALOG_FIELDS = [
    "preset", "estimate", "style-layer", "style-file", "style-strength", "preserve-color",
    "color-mode", "style-layer-2", "style-blend", "style-scale", "advanced",
]  # fmt: skip
ADVANCED_FIELDS = ["iterations", "max-size", "endpoint"]


def show_dialog(procedure: Any, config: Any, speed: float | None = None) -> bool:
    """The settings dialog (GimpUi.ProcedureDialog: values are remembered by GIMP).

    The expected time follows the preset; Iterations is greyed out unless the preset is
    "custom", the colour mode unless Preserve colours is on, the blend without a second style.
    """
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    global _UI_READY
    GimpUi.init(PROC_NAME)
    _UI_READY = True
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style")

    def estimate() -> str:
        return estimate_text(str(config.get_property("preset")),
                             int(config.get_property("max-size")),
                             int(config.get_property("iterations")), speed)  # fmt: skip

    label = dialog.get_label("estimate", estimate(), False, False)
    dialog.get_label("advanced-title", "Advanced", False, False)
    dialog.fill_box("advanced-box", list(ADVANCED_FIELDS))
    dialog.fill_expander("advanced", "advanced-title", False, "advanced-box")
    dialog.fill(list(DIALOG_FIELDS))
    custom = Gimp.ValueArray.new(1)
    custom.append(GObject.Value(GObject.TYPE_STRING, "custom"))
    dialog.set_sensitive_if_in("iterations", None, "preset", custom, True)
    # set_sensitive binds to the property only when given the config (None: a fixed value)
    dialog.set_sensitive("color-mode", True, config, "preserve-color", False)
    blend = dialog.get_widget("style-blend", GObject.TYPE_NONE)

    def refresh(*_args: Any) -> None:
        with contextlib.suppress(Exception):
            label.set_text(estimate())
        if blend is not None:
            blend.set_sensitive(config.get_property("style-layer-2") is not None)

    for prop in ("preset", "max-size", "iterations", "style-layer-2"):
        config.connect(f"notify::{prop}", refresh)
    refresh()
    ok = dialog.run()
    dialog.destroy()
    return bool(ok)


def _choice(values: list[tuple[str, str, str]]) -> Any:
    choice = Gimp.Choice.new()
    for ident, (nick, label, help_text) in enumerate(values):
        choice.add(nick, ident, label, help_text)
    return choice


class NeuralStyle(Gimp.PlugIn):
    """Registers python-fu-neural-style."""

    def do_query_procedures(self) -> list[str]:
        # the dialog's Help button opens help/en/plugin.html (docs/plugin.md, installed
        # with the plug-in) instead of GIMP's "user manual is not installed"
        help_dir = os.path.join(PLUGIN_DIR, "help")
        if os.path.isdir(help_dir):
            self.set_help_domain(HELP_DOMAIN, Gio.File.new_for_path(help_dir))
        return [PROC_NAME]

    def do_set_i18n(self, _name: str) -> bool:
        return False

    def do_create_procedure(self, name: str) -> Any:
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        proc.set_image_types("RGB*, GRAY*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        proc.set_menu_label("Neural _Style…")
        proc.add_menu_path("<Image>/Filters/Artistic")
        proc.set_documentation(
            "Repaint the layer in the style of another layer (neural style transfer)",
            "Sends the active layer (or the selection's bounding box of it) and the style layer "
            "to the Neural Style daemon (start it with 'neural-style serve') and adds the "
            "result as a new layer above the active one. style-strength multiplies the style "
            "weight: style/content weight ratio = strength x 1e-6 (1 = engine default). "
            "style-layer-2 adds a second style with share style-blend; style-scale sizes the "
            "style's brush strokes; a preset other than 'custom' chooses the optimiser, a "
            "coarse-to-fine ladder and the iteration count (max-size stays the working size). "
            "A selection limits the effect: outside it the result equals the layer.",
            name,
        )
        proc.set_attribution("Neural Style for GIMP contributors", "MIT", "2025")
        flags = GObject.ParamFlags.READWRITE
        proc.add_layer_argument(
            "style-layer", "St_yle layer", "The painting whose style you want: any layer of any "
            "open image",
            True, flags,
        )  # fmt: skip
        proc.add_int_argument(
            "iterations", "_Iterations", "How long to work on the picture (only with the Custom "
            "preset): more is stronger and slower",
            1, 100000, DEFAULT_ITERATIONS, flags,
        )  # fmt: skip
        proc.add_int_argument(
            "max-size", "_Max size", "Size the picture is painted at (long side, in pixels); the "
            "result is scaled back to the layer. Bigger shows finer strokes but takes longer",
            MIN_MAX_SIZE, MAX_MAX_SIZE, DEFAULT_MAX_SIZE, flags,
        )  # fmt: skip
        proc.add_double_argument(
            "style-strength", "Style stre_ngth", "How strongly the style takes over: 1 is the "
            "usual balance, 2 paints more boldly, 0.5 keeps more of your picture",
            0.0, MAX_STRENGTH, DEFAULT_STRENGTH, flags,
        )  # fmt: skip
        proc.add_boolean_argument(
            "preserve-color", "Preserve co_lors",
            "Keep your picture's own colours and take only the brushwork from the style", False,
            flags,
        )  # fmt: skip
        proc.add_string_argument(
            "endpoint", "Daemon _endpoint", "Where the Neural Style service runs; leave empty "
            "to find it on this computer (tcp://HOST:PORT for another one)", "", flags,
        )  # fmt: skip
        # appended after the original arguments: positional callers keep working
        proc.add_layer_argument(
            "style-layer-2", "_Second style layer", "Optionally, a second painting to mix in",
            True, flags,
        )  # fmt: skip
        proc.add_double_argument(
            "style-blend", "Style _blend", "How much of the second painting: 0 none, 0.5 half "
            "and half, 1 only the second", 0.0, 1.0, DEFAULT_BLEND, flags,
        )  # fmt: skip
        proc.add_double_argument(
            "style-scale", "Style s_cale", "Size of the brush strokes: 1 as in the painting, "
            "2 bigger, 0.5 smaller",
            MIN_STYLE_SCALE, MAX_STYLE_SCALE, DEFAULT_STYLE_SCALE, flags,
        )  # fmt: skip

        def timed(name: str) -> str:
            return (
                f"{name.capitalize()} ({about(estimate_seconds(name, DEFAULT_MAX_SIZE, 0, None))})"
            )

        preset_choice = _choice([
            ("fast", timed("fast"), "A quick first look"),
            ("balanced", timed("balanced"), "Cleaner strokes; a few minutes"),
            ("quality", timed("quality"), "The most finished result; takes longest"),
            ("custom", "Custom (Advanced: Iterations)", "As many steps as Iterations says"),
        ])  # fmt: skip
        proc.add_choice_argument(
            "preset", "P_reset", "How much time to spend: Fast for a first look, Quality for "
            "the final picture", preset_choice, DEFAULT_PRESET, flags,
        )  # fmt: skip
        color_choice = _choice([
            ("luminance", "Keep my colours", "Only the brushwork comes from the style"),
            ("histogram", "Blend the palettes", "The style's colours are shifted towards "
             "yours first"),
        ])  # fmt: skip
        proc.add_choice_argument(
            "color-mode", "C_olor mode", "How Preserve colors keeps your picture's colours",
            color_choice, "luminance", flags,
        )  # fmt: skip
        proc.add_file_argument(
            "style-file", "Or open _painting…", "A painting (any image file) to take the "
            "style from, when no style layer is chosen", Gimp.FileChooserAction.OPEN, True, None,
            flags,
        )  # fmt: skip
        proc.add_layer_return_value("new-layer", "New layer", "The stylized layer", False, flags)
        return proc

    def run(self, procedure, run_mode, image, drawables, config, _data):
        interactive = run_mode == Gimp.RunMode.INTERACTIVE
        rerun = run_mode != Gimp.RunMode.NONINTERACTIVE  # dialog, Re-Show, Repeat
        try:
            settings = prepare_rerun(image, list(drawables), config) if rerun else None
            speed = (settings or {}).get("speed")
            if interactive and not show_dialog(procedure, config, speed):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            if settings is not None:
                remember(settings, image, config)  # whatever the outcome of the job
            layer = stylize(image, list(drawables), config, rerun and has_display())
            if settings is not None and LAST_SPEED:
                settings["speed"] = round(LAST_SPEED, 4)  # for the dialog's expected times
                save_settings(settings_path(), settings)
        except UserCancelled:
            log_event("cancelled")
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        except PluginError as exc:
            log_event("failed", message=str(exc))
            return procedure.new_return_values(
                Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(str(exc))
            )
        except Exception as exc:
            log_event("crashed", traceback=traceback.format_exc())
            return procedure.new_return_values(
                Gimp.PDBStatusType.EXECUTION_ERROR,
                GLib.Error(
                    f"Neural Style failed unexpectedly: {exc!r}. Please report this with the "
                    f"traceback:\n{traceback.format_exc()}"
                ),
            )
        retval = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
        retval.remove(1)
        retval.insert(1, GObject.Value(Gimp.Layer, layer))
        return retval


if __name__ == "__main__":
    setup_import_path()
    Gimp.main(NeuralStyle.__gtype__, sys.argv)
