"""Following a job: event kinds, the blocking wait of batch mode, the throttle of window
updates, how big the previews asked for are (the canvas preview's side), and the dialog
both progress windows are made of (``JobDialog``)."""

from __future__ import annotations

import time
from typing import Any

from nsg_bundle import PROC_NAME, defaults
from nsg_errors import UserCancelled
from nsg_pixels import fit_within, to_rgb8

#: Long side of the progress window's previews (the protocol's default, shared/defaults.py).
PREVIEW_SIDE: int = defaults.PREVIEW_SIDE


CANVAS_PREVIEW_MAX = 1024


#: Poll period of the interactive progress window (ms); the client's heartbeats ride on it.
POLL_MS = 50


#: Response id of the progress window's "Stop and keep" button.
RESPONSE_KEEP = 1


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
        event = getattr(exc, "event", None)
        if event is not None and event_kind(event) == "cancelled":
            raise UserCancelled() from None
        raise


class JobDialog:
    """What both progress windows are made of: a modal dialog with a status line, a bar, a
    time-left line and the live preview; the poll of the current job from a GLib timeout on
    the main thread (the ZeroMQ socket is never touched from another thread) and the nested
    main loop it runs until the job ends. ``ui`` carries the modules (GimpUi, Gtk, GLib,
    GdkPixbuf) so unit tests can hand in fakes. Subclasses say what the current job is,
    what an event does and how Cancel works."""

    def __init__(self, ui: Any, title: str, width: int, status: str, bar: str) -> None:
        self.ui = ui
        self.loop: Any = None
        self.error: BaseException | None = None
        self.cancelled = False
        Gtk = ui.Gtk
        self.dialog = ui.GimpUi.Dialog(title=title, role=PROC_NAME, modal=True)
        self.dialog.set_default_size(width, -1)
        box = self.dialog.get_content_area()
        box.set_spacing(6)
        box.set_border_width(12)
        self.status = Gtk.Label(label=status)
        self.status.set_xalign(0.0)
        self.bar = Gtk.ProgressBar()
        self.bar.set_show_text(True)
        self.bar.set_text(bar)
        self.eta = Gtk.Label(label="")
        self.eta.set_xalign(0.0)
        self.preview = Gtk.Image()
        self.preview.set_size_request(PREVIEW_SIDE, PREVIEW_SIDE)
        for widget in (self.status, self.bar, self.eta, self.preview):
            box.pack_start(widget, False, False, 0)
        self.dialog.connect("delete-event", self._on_delete)

    def current_job(self) -> Any:
        """The job whose events are polled now (None: nothing submitted yet)."""
        raise NotImplementedError

    def handle(self, event: Any) -> None:
        raise NotImplementedError

    def request_cancel(self) -> None:
        raise NotImplementedError

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

    def poll(self) -> bool:
        """Dispatch the current job's events; False once the loop has ended (an error
        included: kept in ``error`` for ``run`` to raise)."""
        job = self.current_job()
        try:
            if job is not None:
                for event in job.poll(timeout_ms=0):
                    self.handle(event)
                    if self.loop is None:
                        return False
        except Exception as exc:
            self.error = exc
            self.quit()
            return False
        return self.loop is not None

    def tick(self) -> bool:
        """GLib timeout callback: poll, dispatch; False removes the timeout."""
        return self.poll()

    def _on_delete(self, *_args: Any) -> bool:
        self.request_cancel()
        return True  # keep the window until the daemon confirms

    def quit(self) -> None:
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.quit()

    def run_loop(self, first: Any = None) -> None:
        """Show the dialog and poll until ``quit``; ``first()`` runs once the loop exists
        (it may already end it). Raises the error a poll kept."""
        GLib = self.ui.GLib
        self.loop = GLib.MainLoop()
        self.dialog.show_all()
        if first is not None:
            first()
        GLib.timeout_add(POLL_MS, self.tick)
        try:
            if self.loop is not None:
                self.loop.run()
        finally:
            self.loop = None
            self.dialog.destroy()
        if self.error is not None:
            raise self.error
