"""Neural Style plug-in: its windows (progress with Cancel / Stop and keep, the offer to
start the daemon and the wait for it) and the flows that use them: connecting (starting the
daemon when the user agrees) and one job from submit to its end. GTK comes in through ``ui``
(GimpUi, Gtk, GLib, GdkPixbuf; ``gtk_ui()`` makes the real one), so the unit tests hand in
fakes; GIMP's image is never touched here (the registered file reads it, nsg_layers writes)."""

from __future__ import annotations

import contextlib
import os
import time
import types
from collections.abc import Callable
from typing import Any

from nsg_bundle import PROC_NAME
from nsg_errors import PluginError, StoppedAndKept, UserCancelled
from nsg_estimates import format_eta, progress_note
from nsg_launch import (
    FLATPAK_PERMISSION,
    host_command,
    in_flatpak,
    serve_command,
    start_daemon,
    use_sandbox_connection_file,
)
from nsg_log import log_event
from nsg_messages import check_size, describe_error, shown_endpoint
from nsg_progress import (
    RESPONSE_KEEP,
    JobDialog,
    Throttle,
    canvas_preview_side,
    event_kind,
    run_job_blocking,
)

#: What a job's reader returns once the daemon has accepted the area's size: the styles as
#: (width, height, RGB u8 pixels) and a refine's start pixels (None: start from the content).
Inputs = tuple[list[tuple[int, int, bytes]], bytes | None]


def run_job(
    client_mod: Any, job: dict[str, Any], area: Any, read_inputs: Callable[[], Inputs],
    interactive: bool, on_preview: Callable[[Any], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Any:  # fmt: skip
    """One job on the daemon, from connecting to its end: returns the Done event, or
    StoppedAndKept. ``area`` is the registered file's ContentArea: its geometry is checked
    against the daemon's limits *before* ``read_inputs`` reads any pixel. Interactive runs
    wait in the progress window (``on_preview``: the canvas preview), batch runs with the
    client's blocking wait (``progress``: GIMP's progress bar). Daemon errors become a
    PluginError whose text says what to do, naming the endpoint in use."""
    endpoint, iterations = job["endpoint"], job["iterations"]
    timeout = float(os.environ.get("NEURAL_STYLE_TIMEOUT", "10") or 10)
    client = None
    try:
        client, hello = connect(client_mod, endpoint, timeout, interactive, gtk_ui)
        log_event("hello", info=hello)
        check_size(area.w, area.h, hello)  # before reading: 8192² float RGBA is 1 GiB
        style_pixels, start = read_inputs()
        ImageBuf = client_mod.ImageBuf
        styles = [ImageBuf(w, h, 3, "u8", data) for w, h, data in style_pixels]
        mask = None if area.mask is None else ImageBuf(area.w, area.h, 1, "u8", area.mask)
        init = None if start is None else ImageBuf(area.w, area.h, area.channels, area.dtype,
                                                   start)  # fmt: skip
        handle = client.submit(
            ImageBuf(area.w, area.h, area.channels, area.dtype, area.data), styles,
            job["params"], mask=mask, init=init,
            preview_every=max(1, iterations // 30) if interactive else 0,
            preview_max_side=canvas_preview_side(area.w, area.h),
        )  # fmt: skip
        log_event("submitted", content=[area.w, area.h, area.channels, area.dtype],
                  styles=[[s.width, s.height] for s in styles],
                  mask=[area.w, area.h] if mask is not None else None,
                  init=init is not None)  # fmt: skip
        if interactive:
            try:
                done = ProgressWindow(gtk_ui(), handle, iterations, on_preview=on_preview).run()
            except StoppedAndKept as kept:
                done = kept
        else:
            done = _wait_batch(handle, iterations, progress)
    except (PluginError, UserCancelled):
        raise
    except Exception as exc:
        if isinstance(exc, client_mod.NeuralStyleError):
            log_event("error", kind=type(exc).__name__, message=str(exc))
            shown = shown_endpoint(endpoint, client, client_mod)
            raise PluginError(describe_error(exc, shown, client_mod)) from exc
        raise
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
    log_event("done", stats=getattr(done, "stats", None), kept=isinstance(done, StoppedAndKept))
    return done


def _wait_batch(job: Any, iterations: int, progress: Callable[[float, str], None] | None) -> Any:
    """Batch mode (no main loop to keep alive): the client's blocking wait, each step logged,
    GIMP's progress bar updated at most every 0.25 s."""
    throttle = Throttle(0.25)

    def on_progress(event: Any) -> None:
        total = int(event.total or iterations)
        log_event("progress", step=event.step, total=total)
        if progress is not None and throttle.ready(event.step >= total):
            text = f"Neural Style: step {event.step} / {total}. {format_eta(event.eta_s)}"
            progress(min(1.0, event.step / max(1, total)), text)

    return run_job_blocking(job, on_progress=on_progress)


_UI_READY: list[bool] = []  # GimpUi.init has run in this process


def gtk_ui() -> Any:
    """The GTK modules the windows use, GimpUi initialised once per process (Repeat, Ctrl+F,
    shows no settings dialog, so nothing may have initialised it yet)."""
    import gi

    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    gi.require_version("GdkPixbuf", "2.0")
    from gi.repository import GdkPixbuf, GimpUi, GLib, Gtk

    if not _UI_READY:
        GimpUi.init(PROC_NAME)
        _UI_READY.append(True)
    return types.SimpleNamespace(GimpUi=GimpUi, Gtk=Gtk, GLib=GLib, GdkPixbuf=GdkPixbuf)


def has_display() -> bool:
    """Whether windows can be shown (always in GIMP's GUI; not in gimp-console)."""
    import gi

    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    try:
        return bool(Gtk.init_check()[0])
    except Exception:
        return False


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
    use_sandbox_connection_file()  # a Flatpak GIMP finds the daemon through a shared file
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
        ui = ui() if callable(ui) else ui  # a factory: GTK is only set up when needed
        if not ask_to_start(ui, command):
            log_event("autostart_declined")
            raise
    log_path = os.path.join(_log_dir(), "neural-style-daemon.log")
    log_event("autostart", command=command, argv=host_command(command), log=log_path)
    proc = start_daemon(command, log_path)
    wait_for_daemon(ui, client_mod, endpoint, proc, log_path)
    client = client_mod.Client(endpoint or None, timeout=timeout)
    return client, client.hello()


def service_status(
    client_mod: Any, endpoint: str, timeout: float = 0.5, on_hello: Any = None
) -> str:
    """The dialog's line on the daemon: running (on what), or not and what OK will do.
    ``on_hello`` receives the daemon's welcome (its measured step time, for the estimate)."""
    use_sandbox_connection_file()
    try:
        with client_mod.Client(endpoint or None, timeout=timeout) as client:
            hello = client.hello()
            device = hello.get("device") or ""
        if on_hello is not None:
            on_hello(hello)
    except Exception as exc:
        if _is_unavailable(exc, client_mod):
            return "Neural Style service: not running; OK offers to start it"
        return f"Neural Style service: not reachable ({getattr(exc, 'message', exc)})"
    return "Neural Style service: running" + (f" on {device}" if device else "")


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
    where = "\n(outside GIMP's Flatpak sandbox: flatpak-spawn --host)" if in_flatpak() else ""
    label = Gtk.Label(label=(
        "The Neural Style service is not running.\nStart it now? It keeps running in the "
        "background for the next pictures (if it does not start, run `neural-style doctor` "
        f"in a terminal).\n\nCommand: {' '.join(command)}{where}"
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
        hint = f" {FLATPAK_PERMISSION}" if in_flatpak() else ""
        raise PluginError(
            f"The Neural Style service {what} while starting. Its messages are in {log_path}; "
            "`neural-style doctor` in a terminal checks the set-up." + hint
        )


class ProgressWindow(JobDialog):
    """The interactive progress dialog: status, step x/y bar, ETA, preview, Cancel and
    Stop and keep (a JobDialog: polled from a GLib timeout, a nested main loop until the
    job ends)."""

    CANCEL_GRACE_S = 5.0

    def __init__(
        self, ui: Any, job: Any, total: int, title: str = "Neural Style", on_preview: Any = None
    ) -> None:
        self.total = max(1, int(total))
        super().__init__(
            ui, title, 360, "Connecting to the Neural Style daemon…", f"Step 0 / {self.total}"
        )
        self.job = job
        self.on_preview = on_preview  # e.g. the canvas preview layer
        self.result: Any = None
        self.cancel_requested_at: float | None = None
        self.keep_requested = False
        self.last_preview: Any = None
        self.step = 0
        self.dialog.add_button("_Stop and keep", RESPONSE_KEEP)
        self.dialog.set_response_sensitive(RESPONSE_KEEP, False)  # until there is an image
        self.dialog.add_button("_Cancel", ui.Gtk.ResponseType.CANCEL)
        self.dialog.connect("response", self._on_response)

    def current_job(self) -> Any:
        return self.job

    # -- events
    def handle(self, event: Any) -> None:
        kind = event_kind(event)
        if kind == "accepted":
            position = getattr(event, "position", 0) or 0
            self.status.set_text(
                f"Waiting in the daemon's queue (position {position})…"
                if position > 0
                else "Stylizing…"
            )
        elif kind == "progress":
            step, total = int(event.step), int(event.total or self.total)
            self.step = step
            self.total = max(1, total)
            self.bar.set_fraction(min(1.0, step / self.total))
            self.bar.set_text(f"Step {step} / {self.total}")
            if self.cancel_requested_at is None:
                self.status.set_text("Stylizing…")
            self.eta.set_text(progress_note(step, self.total, getattr(event, "eta_s", None)))
        elif kind == "preview":
            self.last_preview = event.image
            if self.cancel_requested_at is None:
                self.dialog.set_response_sensitive(RESPONSE_KEEP, True)
            self.show_preview(event.image)
            if self.on_preview is not None:
                try:
                    self.on_preview(event.image)
                except Exception as exc:  # a preview must never end the job
                    log_event("canvas_preview_failed", error=repr(exc))
        elif kind == "done":
            self.result = event
            self.bar.set_fraction(1.0)
            self.bar.set_text(f"Step {self.total} / {self.total}")
            self.quit()
        elif kind == "cancelled":
            self.cancelled = True
            self.quit()

    # -- main loop plumbing
    def tick(self) -> bool:
        """GLib timeout callback: poll, dispatch, give up on an unconfirmed cancel."""
        if not self.poll():
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

    def run(self) -> Any:
        """Show the window until the job ends; returns Done, raises the error or UserCancelled."""
        self.run_loop()
        if self.result is not None:
            return self.result
        if self.keep_requested and self.last_preview is not None:
            raise StoppedAndKept(self.last_preview, self.step, self.total)
        raise UserCancelled()
