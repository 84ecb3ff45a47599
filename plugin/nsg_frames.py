"""Neural Style plug-in: Filters > Animation > Neural Style (all frames)…

GIMP keeps an animation as layers, one layer a frame, the bottom layer first, timing in the
names (``Frame 3 (100ms) (replace)``). This procedure stylizes every frame on the daemon, one
job after another on one connection: from the second frame on, each job carries the previous
frame's content and stylized result, so the daemon starts from that result warped by optical
flow and adds the temporal loss (frames mode; docs/frames.md); ``independent`` turns that off.
One progress window for the run (frame k/N, the step, time left, the current frame's live
preview, Cancel); Cancel keeps the frames done. The result is a new layer group on top with a
layer per frame, named as its source frame, in one undo step.

The pure part (frame order, names, time left, the sequence's bookkeeping) needs no GIMP; the
GIMP reads and writes import ``gi`` when called. Bundled beside neural_style.py by
``neural-style install-plugin``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from nsg_bundle import SHARED_PACKAGE
from nsg_errors import PluginError
from nsg_estimates import format_eta
from nsg_log import log_event
from nsg_params import effective_iterations
from nsg_procedure import ARGUMENTS
from nsg_progress import JobDialog, canvas_preview_side, event_kind, run_job_blocking
from nsg_results import RESULT_SUFFIX


def _load_defaults() -> Any:
    for name in (f"{SHARED_PACKAGE}.defaults", "neural_style.shared.defaults"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("Neural Style's bundled shared package is missing: reinstall the plug-in")


FRAMES_PROC_NAME = "python-fu-neural-style-frames"
FRAMES_MENU_LABEL = "Neural Style (_all frames)…"
FRAMES_MENU_PATH = "<Image>/Filters/Animation"
FRAMES_TITLE = "Neural Style (all frames)"
DEFAULT_TEMPORAL_WEIGHT = float(_load_defaults().TEMPORAL_WEIGHT)
MAX_TEMPORAL_WEIGHT = 1e12
#: The daemon feature that takes a previous frame with a job.
FRAMES_FEATURE = "frames"

FRAMES_BLURB = "Stylize every frame (layer) of an animation, frames consistent with each other"
FRAMES_HELP = (
    "Takes the image's layers as the frames of an animation (the bottom layer first; layer "
    "groups and the style layer are left out) and stylizes each on the Neural Style daemon. "
    "From the second frame on, each starts from the previous stylized frame warped by optical "
    "flow and keeps close to it where the motion is reliable (temporal-weight; 0: the start "
    "only), so strokes do not flicker; a scene cut starts afresh. independent stylizes every "
    "frame on its own. The result is a new layer group on top, a layer per frame with its "
    "source frame's name (and timing), in one undo step; Cancel keeps the frames done. The "
    "other arguments are those of python-fu-neural-style."
)

#: python-fu-neural-style's arguments but refine, then the frames mode's own.
FRAMES_ARGUMENTS: list[tuple[Any, ...]] = [a for a in ARGUMENTS if a[1] != "refine"] + [
    ("double", "temporal-weight", "_Temporal weight", "How strongly each frame keeps to the "
     "previous one where the motion is clear: higher flickers less, 0 only starts from it",
     0.0, MAX_TEMPORAL_WEIGHT, DEFAULT_TEMPORAL_WEIGHT),
    ("boolean", "independent", "_Independent frames", "Stylize every frame on its own (they "
     "flicker: for a set of stills rather than an animation)", False),
    ("boolean", "new-image", "Result as a _new image", "Put the stylized frames in a new "
     "image (ready to play back or export, frame names exactly kept) instead of a layer "
     "group on top of this one", False),
]  # fmt: skip
FRAMES_DIALOG_FIELDS = [
    "preset", "style-layer", "style-file", "style-strength", "preserve-color", "color-mode",
    "style-scale", "temporal-weight", "independent", "new-image", "iterations", "max-size",
    "endpoint",
]  # fmt: skip


# --------------------------------------------------------------------------- pure part
def frame_layers(layers: list[Any], style_ids: set[int]) -> list[Any]:
    """The frames, first to last: the image's top-level layers bottom-up (GIMP's animation
    order), without layer groups (an earlier result) and the style layer(s)."""
    frames = []
    for layer in reversed(layers):
        if layer.get_id() in style_ids:
            continue
        if _is_group(layer):
            continue
        frames.append(layer)
    return frames


def _is_group(layer: Any) -> bool:
    try:
        return bool(layer.is_group())
    except Exception:
        return False


def group_name(styles: list[str], done: int, total: int) -> str:
    """'Frames in the style of starry_night (Neural Style)'; a cancelled run says how many."""
    partial = f" ({done} of {total} frames)" if done < total else ""
    return f"Frames in the style of {' + '.join(styles)}{partial}{RESULT_SUFFIX}"


def frames_left_s(
    frame_times: list[float], frames_left: int, current_eta_s: float | None
) -> float | None:
    """Seconds left: the current frame's estimate, plus the frames still to start at the
    mean of the finished frames after the first (a continuation costs less than a first
    frame), or at the first's when it alone is done."""
    if not frame_times:
        return None
    later = frame_times[1:] or frame_times[:1]
    per_frame = sum(later) / len(later)
    return max(0.0, float(current_eta_s or 0.0)) + per_frame * max(0, frames_left)


def progress_text(k: int, total: int, name: str, step: int, steps: int) -> str:
    return f"Frame {k} / {total} ({name}): step {step} / {steps}"


class FrameIn:
    """One frame as read from its layer: pixels and where its result goes."""

    def __init__(
        self, name: str, w: int, h: int, offsets: tuple[int, int], channels: int, dtype: str,
        bps: int, fmt: str, data: bytes, gray: bool = False,
    ) -> None:  # fmt: skip
        self.name, self.w, self.h, self.offsets = name, w, h, offsets
        self.channels, self.dtype, self.bps, self.fmt = channels, dtype, bps, fmt
        self.data, self.gray = data, gray


class FrameSequence:
    """The run's bookkeeping, GTK-free: which frame is next, what each job carries, the
    results so far, the times. ``client``/``client_mod`` are the bundled client's."""

    def __init__(
        self, client: Any, client_mod: Any, frames: list[FrameIn], styles: list[Any],
        params: dict[str, Any], *, temporal_weight: float, independent: bool,
        features: list[str], interactive: bool, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.client, self.client_mod = client, client_mod
        self.frames, self.styles, self.params = frames, styles, params
        self.temporal_weight = float(temporal_weight)
        self.consistent = not independent and FRAMES_FEATURE in features
        self.interactive = interactive
        self.results: list[Any] = []  # ImageBuf per frame done, in order
        self.frame_times: list[float] = []
        self.stats: list[dict[str, Any]] = []
        self.clock = clock
        self.started: float | None = None
        self.job: Any = None

    @property
    def done(self) -> int:
        return len(self.results)

    @property
    def total(self) -> int:
        return len(self.frames)

    def _buf(self, frame: FrameIn) -> Any:
        return self.client_mod.ImageBuf(frame.w, frame.h, frame.channels, frame.dtype,
                                        frame.data)  # fmt: skip

    def previous_for(self, k: int) -> tuple[Any, Any] | None:
        """Frame k's previous frame (content, result), when frames mode applies to it: not
        the first, consistent mode, and the same size and pixel layout as frame k-1."""
        if not self.consistent or k == 0 or len(self.results) < k:
            return None
        prev, cur = self.frames[k - 1], self.frames[k]
        if (prev.w, prev.h, prev.channels, prev.dtype) != (cur.w, cur.h, cur.channels,
                                                           cur.dtype):  # fmt: skip
            return None
        result = self.results[k - 1]
        if (result.width, result.height) != (cur.w, cur.h):
            return None
        return self._buf(prev), result

    def submit_next(self) -> Any:
        """Submit the next frame's job; returns the client's Job."""
        k = self.done
        frame = self.frames[k]
        previous = self.previous_for(k)
        if self.started is None:
            self.started = self.clock()
        self._frame_start = self.clock()
        steps = effective_iterations(self.params)
        self.job = self.client.submit(
            self._buf(frame), self.styles, self.params,
            preview_every=max(1, steps // 30) if self.interactive else 0,
            preview_max_side=canvas_preview_side(frame.w, frame.h),
            previous=previous,
            temporal_weight=self.temporal_weight if previous is not None else None,
        )  # fmt: skip
        log_event("frame_submitted", frame=k + 1, of=self.total, name=frame.name,
                  previous=previous is not None)  # fmt: skip
        return self.job

    def finish(self, done: Any) -> None:
        """Frame ``done``'s result arrived (a client Done event)."""
        frame = self.frames[self.done]
        out = done.image
        if (out.width, out.height) != (frame.w, frame.h):
            raise PluginError(
                f"The daemon returned {out.width}x{out.height} pixels for the "
                f"{frame.w}x{frame.h} frame {frame.name!r}. Reinstall the plug-in and the "
                "daemon from the same version."
            )
        self.results.append(out)
        self.frame_times.append(self.clock() - self._frame_start)
        stats = dict(getattr(done, "stats", None) or {})
        self.stats.append(stats)
        log_event("frame_done", frame=self.done, of=self.total, seconds=self.frame_times[-1],
                  steps=stats.get("steps"), info=stats.get("frame") or {})  # fmt: skip
        self.job = None

    def run_blocking(self, progress: Callable[[float, str], None] | None = None) -> None:
        """Batch mode: every frame in turn with the client's blocking wait."""
        while self.done < self.total:
            k = self.done
            job = self.submit_next()
            name = self.frames[k].name

            def on_progress(event: Any, k: int = k, name: str = name) -> None:
                total = int(event.total or 1)
                if progress is not None:
                    left = frames_left_s(self.frame_times, self.total - k - 1, event.eta_s)
                    text = progress_text(k + 1, self.total, name, int(event.step), total)
                    progress((k + min(1.0, event.step / total)) / self.total,
                             f"Neural Style: {text}. {format_eta(left)}")  # fmt: skip

            self.finish(run_job_blocking(job, on_progress=on_progress))


class FramesWindow(JobDialog):
    """The run's one progress window: frame k/N and its name, the current frame's step,
    time left, the frame's live preview, Cancel (a JobDialog polling the current frame's
    job); submits the next frame when one ends."""

    def __init__(self, ui: Any, seq: FrameSequence) -> None:
        super().__init__(ui, FRAMES_TITLE, 380, f"Frame 1 / {seq.total}", f"0 / {seq.total} frames")
        self.seq = seq
        self.cancel_requested = False
        self.dialog.add_button("_Cancel (keep the frames done)", ui.Gtk.ResponseType.CANCEL)
        self.dialog.connect("response", lambda *_a: self.request_cancel())

    def current_job(self) -> Any:
        return self.seq.job

    def on_frame_start(self, k: int) -> None:
        """Hook: frame k (0-based) is about to be submitted (tests press Cancel here)."""

    def handle(self, event: Any) -> None:
        seq = self.seq
        kind = event_kind(event)
        k = seq.done
        name = seq.frames[k].name if k < seq.total else ""
        if kind == "progress":
            step, total = int(event.step), max(1, int(event.total or 1))
            self.bar.set_fraction(min(1.0, (k + step / total) / seq.total))
            self.bar.set_text(f"{k} / {seq.total} frames")
            if not self.cancel_requested:
                self.status.set_text(progress_text(k + 1, seq.total, name, step, total))
            left = frames_left_s(seq.frame_times, seq.total - k - 1, event.eta_s)
            self.eta.set_text(format_eta(left) if left is not None else "")
        elif kind == "preview":
            self.show_preview(event.image)
        elif kind == "done":
            seq.finish(event)
            self.bar.set_fraction(seq.done / seq.total)
            self.bar.set_text(f"{seq.done} / {seq.total} frames")
            if self.cancel_requested or seq.done >= seq.total:
                self.quit()
            else:
                self._start_next()
        elif kind == "cancelled":
            self.cancelled = True
            self.quit()

    def _start_next(self) -> None:
        self.on_frame_start(self.seq.done)
        if self.cancel_requested:
            self.quit()
            return
        self.seq.submit_next()

    def request_cancel(self) -> None:
        """Cancel: the current frame stops, the frames done are kept."""
        if self.cancel_requested:
            return
        self.cancel_requested = True
        self.status.set_text(f"Cancelling… the {self.seq.done} frames done are kept")
        self.dialog.set_response_sensitive(self.ui.Gtk.ResponseType.CANCEL, False)
        job = self.seq.job
        if job is None:
            self.quit()
            return
        try:
            job.cancel()
        except Exception as exc:
            log_event("cancel_failed", error=repr(exc))
            self.quit()

    def run(self) -> None:
        """Until every frame is done or the run is cancelled; raises a job's error."""
        self.run_loop(first=self._start_next)


__all__ = [
    "FRAMES_ARGUMENTS",
    "FRAMES_PROC_NAME",
    "FrameSequence",
    "FramesWindow",
    "frame_layers",
    "frames_left_s",
    "group_name",
]
