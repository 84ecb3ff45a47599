"""Neural Style plug-in: the pure part (no GIMP, no GTK): job parameters, pixel formats,
presets and time estimates, re-run memory, texts for the user. Bundled beside
neural_style.py by ``neural-style install-plugin``; the unit tests import it directly."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import struct
import sys
import time
from typing import Any

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


PROC_NAME = "python-fu-neural-style"
HELP_DOMAIN = "org.neural-style.gimp"
SHARED_PACKAGE = "nsg_shared"
REINSTALL_COMMAND = "neural-style install-plugin"
START_COMMAND = "neural-style serve"
FETCH_WEIGHTS_COMMAND = "neural-style fetch-weights"


def _load_schema() -> Any:
    """The job-parameter schema (shared/schema.py): the bundled copy install-plugin writes
    beside this file (``nsg_shared``), else a checkout's own (tests, a development tree).
    Standard library only, so it loads before pyzmq and msgpack are checked."""
    errors = []
    for name in (f"{SHARED_PACKAGE}.schema", "neural_style.shared.schema"):
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ImportError(
        f"Neural Style's parameter schema is missing ({'; '.join(errors)}); reinstall the "
        f"plug-in with: {REINSTALL_COMMAND}"
    )


#: Every range, default and preset figure below comes from the bundled schema (and its
#: limits), so the dialog offers what the daemon accepts.
schema = _load_schema()
_FIELD = schema.BY_NAME
#: Engine defaults: content 1e4, style 1e-2. style-strength multiplies the style weight,
#: so the style/content ratio is strength x 1e-6.
BASE_CONTENT_WEIGHT = float(_FIELD["content_weight"].default)
BASE_STYLE_WEIGHT = float(_FIELD["style_weight"].default)

DEFAULT_ITERATIONS = int(_FIELD["iterations"].default)
MIN_ITERATIONS, MAX_ITERATIONS = int(_FIELD["iterations"].lo), int(_FIELD["iterations"].hi)
DEFAULT_MAX_SIZE = int(_FIELD["size"].default)
MIN_MAX_SIZE, MAX_MAX_SIZE = int(_FIELD["size"].lo), int(_FIELD["size"].hi)
DEFAULT_STRENGTH = 1.0
MAX_STRENGTH = schema.limits.UI_MAX_STYLE_STRENGTH
DEFAULT_BLEND = 0.5
DEFAULT_STYLE_SCALE = float(_FIELD["style_scale"].default)
MIN_STYLE_SCALE = schema.limits.UI_MIN_STYLE_SCALE
MAX_STYLE_SCALE = schema.limits.UI_MAX_STYLE_SCALE
#: preset -> what the daemon's preset sets (the schema's PRESETS). The daemon applies the
#: preset; the plug-in only needs the iteration count for its progress bar, preview rate and
#: time estimates. "custom" sends no preset: iterations as given.
PRESET_VALUES: dict[str, dict[str, Any]] = {k: dict(v) for k, v in schema.PRESETS.items()}
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


def preset_label(name: str) -> str:
    """'Fast (about 1 min)': the preset menu's entry, timed for the default Max size."""
    return f"{name.capitalize()} ({about(estimate_seconds(name, DEFAULT_MAX_SIZE, 0, None))})"


def estimate_text(preset: str, max_size: int, iterations: int, speed: float | None) -> str:
    """The dialog's line under the preset."""
    when = "on this computer" if speed else "estimated for a 2-core CPU"
    return f"Expected time: {about(estimate_seconds(preset, max_size, iterations, speed))} ({when})"


def daemon_speed(hello: dict[str, Any] | None) -> float | None:
    """The daemon's own measure of seconds per step per megapixel (``step_s_per_mpx`` in
    welcome's ``limits``, once it has finished a job; ``Client.hello`` lifts it to the top
    level), or None."""
    try:
        value = float((hello or {})["step_s_per_mpx"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if value == value and value > 0 else None


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
COLOR_MODES = tuple(c for c in _FIELD["preserve_color"].choices if c != "none")
PREVIEW_SIDE = 256
CANVAS_PREVIEW_MAX = 1024
#: Poll period of the interactive progress window (ms); the client's heartbeats ride on it.
POLL_MS = 50


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
    """The job's parameter dict (keys are daemon/engine/params.py StyleParams fields, plus preset).

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


def check_params(params: dict[str, Any]) -> None:
    """Refuse, before anything is sent, what the daemon would refuse: the schema's names,
    types, bounds and combinations (a preset's values under the given ones)."""
    try:
        schema.from_dict(params)
    except schema.ParamError as exc:
        raise PluginError(exc.message) from None


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
        path = style_file_of(config)
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
    check_params(params)
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


def style_file_of(config: Any) -> str:
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


def refine_source_name(name: str) -> str | None:
    """The content layer's name in a result's name ('chelsea' from 'chelsea in the style of
    starry (Neural Style)'), or None when the layer is not a Neural Style result. GIMP adds
    ' #1' to a name already in the image: that is still a result."""
    head, sep, tail = name.rpartition(" #")
    name = head if sep and tail.isdigit() else name
    if not name.endswith(RESULT_SUFFIX):
        return None
    content, sep, _ = name.partition(" in the style of ")
    return content if sep and content else None


def find_refine_source(layers: list[Any], result: Any) -> Any:
    """The original content layer of a result layer (by name, not the result itself), or None."""
    name = refine_source_name(result.get_name())
    for layer in layers:
        if name is not None and layer.get_name() == name and not _same(layer, result):
            return layer
    return None


# --------------------------------------------------------------------------- errors -> messages


def start_command(endpoint: str) -> str:
    """The exact command that starts a daemon this plug-in would reach."""
    return " ".join(serve_command(endpoint))


def describe_error(exc: BaseException, endpoint: str = "", client_mod: Any = None) -> str:
    """Turn a client/daemon exception into a message that says what to do next. The texts
    are shared/errors.py's USER_TEXTS (bundled as nsg_shared), worded once with the CLI."""
    code = getattr(getattr(exc, "code", None), "value", getattr(exc, "code", None))
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", "") or ""
    died = getattr(client_mod, "DaemonDied", None)
    gone = isinstance(exc, died) if died is not None else type(exc).__name__ == "DaemonDied"
    return _shared_errors().user_message(
        code, message, hint, died=gone, endpoint=endpoint, start=start_command(endpoint),
        client="plug-in", size="'Max size'", fetch=FETCH_WEIGHTS_COMMAND,
        reinstall=REINSTALL_COMMAND,
    )  # fmt: skip


def shown_endpoint(endpoint: str, client: Any, client_mod: Any) -> str:
    """The endpoint to name in messages: the user's, else a non-default discovered one.

    A daemon found through its connection file on another port must be restarted with
    ``--bind`` that port, or the plug-in would not find it at the same place again.
    """
    if endpoint or client is None:
        return endpoint
    found = getattr(client, "endpoint", "") or ""
    default = getattr(getattr(client_mod, "protocol", None), "DEFAULT_ENDPOINT", None)
    return found if found and found != default else ""


def _shared_errors() -> Any:
    """shared/errors.py: the bundled copy (nsg_shared), else a checkout's own."""
    for name in (f"{SHARED_PACKAGE}.errors", "neural_style.shared.errors"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise PluginError(f"The plug-in's bundled package is missing; reinstall: {REINSTALL_COMMAND}")


def check_size(width: int, height: int, hello: dict[str, Any] | None) -> None:
    """PluginError (before anything is read) when the area exceeds the daemon's max_pixels."""
    limits = (hello or {}).get("limits") or {}
    max_pixels = int(limits.get("max_pixels") or 0)
    if max_pixels and width * height > max_pixels:
        side = int(max_pixels**0.5)

        def amount(n: int) -> str:
            return f"{n / 1e6:.1f} megapixels" if n >= 1_000_000 else f"{n:,} pixels"

        raise PluginError(
            f"The area is {width}x{height} ({amount(width * height)}); the Neural Style daemon "
            f"takes at most {amount(max_pixels)} (about {side}x{side}). Select a smaller area "
            "or scale the image down (Image ▸ Scale Image); the result is painted at Max size "
            "anyway."
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
    """Start the daemon detached from GIMP (it keeps running after the plug-in exits); from
    a Flatpak GIMP on the host (see host_command)."""
    import subprocess

    argv = host_command(command)
    try:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
    except OSError as exc:
        raise PluginError(
            f"Could not start the Neural Style service ({' '.join(argv)}): {exc}. Start it "
            f"yourself with: {' '.join(command)}"
        ) from None


# --------------------------------------------------------------------------- GIMP in a Flatpak

#: Set by Flatpak in every sandbox (and /.flatpak-info is there too).
FLATPAK_INFO = "/.flatpak-info"
#: How a Flatpak app runs a command outside its sandbox (the daemon's virtual environment,
#: its Python and TensorFlow are on the host, invisible from inside).
HOST_SPAWN = ("flatpak-spawn", "--host")
CONNECTION_FILE_ENV = "NEURAL_STYLE_CONNECTION_FILE"
FLATPAK_PERMISSION = (
    "GIMP's Flatpak may start programs outside its sandbox only with permission: run "
    "'flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP' and "
    "restart GIMP."
)


def in_flatpak(env: dict[str, str] | None = None, info: str = FLATPAK_INFO) -> bool:
    """Whether this GIMP runs in a Flatpak sandbox."""
    env = dict(os.environ) if env is None else env
    return bool(env.get("FLATPAK_ID")) or os.path.exists(info)


def use_sandbox_connection_file(env: Any = None, flatpak: bool | None = None) -> str:
    """The connection file a Flatpak GIMP shares with the daemon on the host ("" outside a
    Flatpak): $NEURAL_STYLE_CONNECTION_FILE when set, else neural-style/daemon.json in the
    app's own config folder ($XDG_CONFIG_HOME, ~/.var/app/org.gimp.GIMP/config: the same
    path inside and outside the sandbox). The sandbox cannot see the host's runtime folder,
    where the daemon writes its key by default; set in ``env`` (this process's environment),
    so every client the plug-in makes reads that file."""
    env = os.environ if env is None else env
    if not (in_flatpak(dict(env)) if flatpak is None else flatpak):
        return ""
    if not env.get(CONNECTION_FILE_ENV):
        config = env.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        env[CONNECTION_FILE_ENV] = os.path.join(config, "neural-style", "daemon.json")
    return str(env[CONNECTION_FILE_ENV])


def host_command(command: list[str], env: Any = None, flatpak: bool | None = None) -> list[str]:
    """The argv that starts ``command`` on this computer: as is, or from a Flatpak GIMP
    through ``flatpak-spawn --host``, handing on the shared connection file so that the
    daemon writes its key where the sandboxed plug-in reads it."""
    conn = use_sandbox_connection_file(env, flatpak)
    if not conn:
        return list(command)
    return [*HOST_SPAWN, f"--env={CONNECTION_FILE_ENV}={conn}", *command]


def canvas_preview_side(width: int, height: int) -> int:
    """Long side of the previews asked for: the area's, within [256, 1024] (the daemon never
    sends more than its working size); GIMP upscales them onto the canvas."""
    return max(PREVIEW_SIDE, min(max(width, height), CANVAS_PREVIEW_MAX))


def event_kind(event: Any) -> str:
    """A client event's kind ("accepted", "progress", "preview", "done", "cancelled"): the
    client's ``EventKind`` (a str enum) in the event class's ``KIND``; "" for anything else."""
    kind = getattr(event, "KIND", "")
    return str(getattr(kind, "value", kind) or "")


def run_job_blocking(job: Any, on_progress=None, on_preview=None, poll_ms: int = 100) -> Any:
    """Wait for a job with the client's ``Job.wait`` (batch mode: no main loop to keep
    alive); returns the Done event. Raises on errors, UserCancelled on cancel."""

    def on_event(event: Any) -> None:
        kind = event_kind(event)
        if kind == "progress" and on_progress:
            on_progress(event)
        elif kind == "preview" and on_preview:
            on_preview(event)

    try:
        return job.wait(on_event, poll_ms=poll_ms)
    except Exception as exc:
        if getattr(exc, "event", None) is not None and event_kind(exc.event) == "cancelled":
            raise UserCancelled() from None
        raise


#: The procedure's documentation (GIMP's Procedure Browser, for scripts).
PROC_BLURB = "Repaint the layer in the style of another layer (neural style transfer)"
PROC_HELP = (
    "Sends the active layer (or the selection's bounding box of it) and the style layer (or "
    "style-file, a painting on disk) to the Neural Style daemon (start it with 'neural-style "
    "serve') and adds the result as a new layer at the top of the layer stack. "
    "style-strength multiplies the style weight: style/content weight ratio = strength x 1e-6 "
    "(1 = engine default). style-layer-2 adds a second style with share style-blend; "
    "style-scale sizes the style's brush strokes; a preset other than 'custom' chooses the "
    "optimiser, a coarse-to-fine ladder and the iteration count (max-size stays the working "
    "size). A selection limits the effect: outside it the result equals the layer. refine, on "
    "a result layer, continues from it."
)

#: The procedure's arguments, in registration order: (kind, name, label, tooltip, *values).
#: The first six are the original ones; the rest are appended so positional callers keep
#: working. Tooltips speak to artists; docs/plugin.md says what each one does technically.
ARGUMENTS: list[tuple[Any, ...]] = [
    ("layer", "style-layer", "St_yle layer",
     "The painting whose style you want: any layer of any open image", True),
    ("int", "iterations", "_Iterations", "How long to work on the picture (only with the "
     "Custom preset): more is stronger and slower", MIN_ITERATIONS, MAX_ITERATIONS,
     DEFAULT_ITERATIONS),
    ("int", "max-size", "_Max size", "Size the picture is painted at (long side, in "
     "pixels); the result is scaled back to the layer. Bigger shows finer strokes but takes "
     "longer", MIN_MAX_SIZE, MAX_MAX_SIZE, DEFAULT_MAX_SIZE),
    ("double", "style-strength", "Style stre_ngth", "How strongly the style takes over: 1 is "
     "the usual balance, 2 paints more boldly, 0.5 keeps more of your picture",
     0.0, MAX_STRENGTH, DEFAULT_STRENGTH),
    ("boolean", "preserve-color", "Preserve co_lors",
     "Keep your picture's own colours and take only the brushwork from the style", False),
    ("string", "endpoint", "Daemon _endpoint", "Where the Neural Style service runs; leave "
     "empty to find it on this computer (tcp://HOST:PORT for another one)", ""),
    ("layer", "style-layer-2", "_Second style layer",
     "Optionally, a second painting to mix in", True),
    ("double", "style-blend", "Style _blend", "How much of the second painting: 0 none, 0.5 "
     "half and half, 1 only the second", 0.0, 1.0, DEFAULT_BLEND),
    ("double", "style-scale", "Style s_cale", "Size of the brush strokes: 1 as in the "
     "painting, 2 bigger, 0.5 smaller", MIN_STYLE_SCALE, MAX_STYLE_SCALE, DEFAULT_STYLE_SCALE),
    ("choice", "preset", "P_reset", "How much time to spend: Fast for a first look, Quality "
     "for the final picture", [
         ("fast", preset_label("fast"), "A quick first look"),
         ("balanced", preset_label("balanced"), "Cleaner strokes; a few minutes"),
         ("quality", preset_label("quality"), "The most finished result; takes longest"),
         ("custom", "Custom (Advanced: Iterations)", "As many steps as Iterations says"),
     ], DEFAULT_PRESET),
    ("choice", "color-mode", "C_olor mode", "How Preserve colors keeps your picture's colours", [
        ("luminance", "Keep my colours", "Only the brushwork comes from the style"),
        ("histogram", "Blend the palettes", "The style's colours are shifted towards yours "
         "first"),
    ], "luminance"),
    ("file", "style-file", "Or open _painting…", "A painting (any image file) to take the "
     "style from, when no style layer is chosen", True, None),
    ("boolean", "refine", "Re_fine this result", "When the selected layer is a Neural Style "
     "result: carry on painting from it (your original picture stays the content)", True),
]  # fmt: skip


#: The settings dialog (neural_style.show_dialog), top to bottom: what an artist changes
#: first; engine settings and the daemon's address under a collapsed "Advanced" (the
#: procedure's argument order differs: new arguments are appended there so positional
#: callers keep working).
DIALOG_FIELDS = [
    "preset", "estimate", "style-layer", "style-file", "style-strength", "preserve-color",
    "color-mode", "style-layer-2", "style-blend", "style-scale", "refine", "service",
    "advanced",
]  # fmt: skip
ADVANCED_FIELDS = ["iterations", "max-size", "endpoint"]


def load_client(vdir: str | None = None) -> Any:
    """Import the bundled client module; PluginError telling how to reinstall if it can't.

    ``vdir``: the vendored wheels' folder in use (for the log).
    """
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


def result_name(
    content: str, styles: list[str], refined: bool = False, stopped_at: int | None = None
) -> str:
    """'chelsea in the style of starry_night (Neural Style)': a refined result is named like
    the first one (after the original content), a stopped one says at which step."""
    if refined:
        content = refine_source_name(content) or content
    stopped = f" (stopped at step {stopped_at})" if stopped_at is not None else ""
    return f"{content} in the style of {' + '.join(styles)}{stopped}{RESULT_SUFFIX}"


def refinable(drawable: Any) -> bool:
    """Whether the layer is a Neural Style result (which the refine argument continues)."""
    try:
        return refine_source_name(drawable.get_name()) is not None
    except Exception:
        return False
