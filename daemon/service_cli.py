"""The daemon's CLI commands (``serve``, ``status``, ``stop``) and the CLI's remote path.

``daemon/cli.py`` owns the entry point and calls :func:`add_commands`; its ``stylize``
command uses :func:`find_daemon` and :func:`stylize_remote` to run on a daemon when one
answers. TensorFlow is imported only by ``serve`` (status/stop must answer in a blink).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import logging.handlers
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neural_style.daemon.engine.params import StyleParams, StylizeResult
from neural_style.daemon.service import (
    ServerConfig,
    array_from_image,
    image_from_array,
    serve,
)
from neural_style.shared import connection, limits, protocol
from neural_style.shared.client import (
    Client,
    DaemonDied,
    Done,
    Event,
    Job,
    Preview,
    Progress,
    Unauthenticated,
    VersionMismatch,
)
from neural_style.shared.errors import NeuralStyleError, user_message
from neural_style.shared.records import Step

log = logging.getLogger("neural_style.daemon")

#: How long ``find_daemon`` waits for a pong.
FIND_TIMEOUT_S = 1.0


# --------------------------------------------------------------------------- argparse


def add_commands(subparsers: Any) -> None:
    """Add ``serve``, ``status`` and ``stop`` to the CLI's subparsers."""
    _add_serve(subparsers)
    _add_status(subparsers)
    _add_stop(subparsers)
    _add_keys(subparsers)


def _add_serve(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the daemon (foreground) that keeps VGG-19 loaded for GIMP and the CLI",
        description="Run the neural-style daemon in the foreground. It listens on loopback "
        f"({protocol.DEFAULT_ENDPOINT} by default), writes a user-only connection file with "
        "its key, and stops cleanly on Ctrl-C, SIGTERM or `neural-style stop`.",
    )
    p.add_argument("--bind", default=protocol.DEFAULT_ENDPOINT, metavar="ENDPOINT",
                   help="ZeroMQ endpoint to listen on (default %(default)s); non-loopback "
                   "addresses need --curve-secret-key")  # fmt: skip
    p.add_argument("--weights", metavar="FILE", help="VGG-19 notop .h5 weights file "
                   "(default: $NEURAL_STYLE_WEIGHTS, then the Keras cache)")  # fmt: skip
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where TensorFlow runs (default %(default)s)")  # fmt: skip
    p.add_argument("--max-pixels", type=_positive_int, default=limits.MAX_IMAGE_PIXELS,
                   help="largest image accepted, in pixels (default %(default)s)")  # fmt: skip
    p.add_argument("--queue", type=_positive_int, default=8, metavar="N",
                   help="jobs that may wait behind the running one (default %(default)s)",
                   )  # fmt: skip
    p.add_argument("--connection-file", type=Path, metavar="FILE",
                   help="where to write the connection file (default: "
                   f"${connection.ENV_FILE}, else the user runtime dir)")  # fmt: skip
    p.add_argument("--curve-secret-key", type=Path, metavar="FILE",
                   help="zmq certificate with the daemon's CURVE secret key: encrypts the "
                   "connection and allows a non-loopback --bind")  # fmt: skip
    p.add_argument("--insecure-null", action="store_true",
                   help="serve without CURVE (loopback only, warns): any local process can "
                   "then connect; by default every endpoint is CURVE with keys in the "
                   "connection file")  # fmt: skip
    p.add_argument("--authorized-keys", type=Path, metavar="DIR",
                   help="with CURVE: folder of allowed client public keys (*.key); default "
                   "~/.config/neural-style/authorized_keys (this user's own client key is "
                   "always allowed)")  # fmt: skip
    p.add_argument("--max-connections", type=_positive_int, default=limits.MAX_CONNECTIONS,
                   metavar="N", help="connections accepted at once (default %(default)s)",
                   )  # fmt: skip
    p.add_argument("--max-jobs-per-client", type=_positive_int,
                   default=limits.MAX_JOBS_PER_CLIENT, metavar="N",
                   help="open jobs one client may have (default %(default)s)")  # fmt: skip
    p.add_argument("--max-job-memory", type=_mebibytes, metavar="MiB",
                   help="largest estimated peak memory of one job (default: 80%% of RAM)",
                   )  # fmt: skip
    p.add_argument("--max-queue-memory", type=_mebibytes, metavar="MiB",
                   help="bytes of images that may wait in the queue (default: 25%% of RAM)",
                   )  # fmt: skip
    p.add_argument("--job-time-limit", type=float, default=48 * 3600.0, metavar="SECONDS",
                   help="stop a job running longer, answering time_limit; 0: none (default "
                   "%(default)g)")  # fmt: skip
    p.add_argument("--worker", choices=("process", "thread"), default="process",
                   help="where the engine runs: a supervised worker process, restarted when "
                   "it crashes or hangs (default), or a thread of the daemon")  # fmt: skip
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where jobs run: this machine (default) or a Ray cluster's actors "
                   "(needs the cluster extra; docs/cluster.md)")  # fmt: skip
    p.add_argument("--ray-address", default="auto", metavar="auto|HOST:PORT",
                   help="with --backend ray: the cluster this machine belongs to (auto, the "
                   "default) or its head's GCS address")  # fmt: skip
    p.add_argument("--workers", type=_positive_int, default=0, metavar="N",
                   help="with --backend ray: actors to start (default: one per GPU of the "
                   "cluster, else one per --worker-cpus CPUs)")  # fmt: skip
    p.add_argument("--worker-cpus", type=_positive_int, default=1, metavar="N",
                   help="with --backend ray: CPU cores (and TensorFlow threads) of each "
                   "CPU actor (default %(default)s)")  # fmt: skip
    p.add_argument("--log-file", type=Path, metavar="FILE",
                   help="log file (default: daemon.log in the user log dir)")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_serve)


def _add_keys(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "client-key",
        help="show this user's CURVE client public key (created once, 0600), to authorise "
        "it on a daemon that uses CURVE",
    )
    p.set_defaults(func=cmd_client_key)
    p = subparsers.add_parser(
        "authorize-key",
        help="allow a CURVE client public key on this machine's daemon (takes effect at "
        "the client's next connection)",
    )
    p.add_argument("key", help="Z85 public key (40 characters) or a zmq .key file")
    p.add_argument("--name", default="", help="file name for it (default: from the key)")
    p.add_argument("--authorized-keys", type=Path, metavar="DIR",
                   help="folder of allowed keys (default ~/.config/neural-style/"
                   "authorized_keys)")  # fmt: skip
    p.set_defaults(func=cmd_authorize_key)


def _add_status(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "status",
        help="show whether a daemon runs, and what it is doing (exit 1 if none answers)",
    )
    _add_endpoint(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)


def _add_stop(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "stop", help="stop the daemon gracefully (cancels its jobs) and wait until it is gone"
    )
    _add_endpoint(p)
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the process to exit (default %(default)s)",
                   )  # fmt: skip
    p.set_defaults(func=cmd_stop)


def _add_endpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", metavar="ENDPOINT",
                   help="daemon to talk to (default: from the connection file, else "
                   f"{protocol.DEFAULT_ENDPOINT}); its key is found in the matching "
                   "connection file")  # fmt: skip
    p.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS",
                   help="how long to wait for an answer (default %(default)s)")  # fmt: skip


def _mebibytes(text: str) -> int:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive size in MiB")
    return int(value * 2**20)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


# --------------------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace) -> int:
    log_file = setup_logging(args.log_file, logging.DEBUG if args.verbose else logging.INFO)
    config = ServerConfig(
        endpoint=args.bind,
        weights=args.weights,
        device=args.device,
        max_pixels=args.max_pixels,
        queue_size=args.queue,
        connection_file=args.connection_file,
        curve_secret_key=args.curve_secret_key,
        insecure_null=args.insecure_null,
        log_file=log_file,
        authorized_keys=args.authorized_keys,
        max_connections=args.max_connections,
        max_jobs_per_client=args.max_jobs_per_client,
        max_job_bytes=args.max_job_memory,
        max_queue_bytes=args.max_queue_memory,
        job_time_limit_s=args.job_time_limit,
        worker=args.worker,
        backend=args.backend,
        ray_address=args.ray_address,
        workers=args.workers,
        worker_cpus=args.worker_cpus,
        verbose=args.verbose,
    )
    return serve(config)


def cmd_client_key(args: argparse.Namespace) -> int:
    from neural_style.shared.client import client_keypair, default_client_key_path

    path = default_client_key_path()
    public, _ = client_keypair(path)
    print(public.decode("ascii"))
    print(f"(secret key: {path}; authorise the public key on the daemon's machine with: "
          f"neural-style authorize-key {public.decode('ascii')})", file=sys.stderr)  # fmt: skip
    return 0


def cmd_authorize_key(args: argparse.Namespace) -> int:
    import re

    from neural_style.daemon.service import default_authorized_keys
    from neural_style.shared.client import _cert_text, _read_public_key

    text = args.key.strip()
    public = _read_public_key(text) if Path(text).is_file() else text
    if not re.fullmatch(r"[0-9A-Za-z.:+=^!/*?&<>()\[\]{}@%$#-]{40}", public):
        print(f"neural-style authorize-key: {public[:60]!r} is not a Z85 CURVE public key "
              "(40 characters).", file=sys.stderr)  # fmt: skip
        return 2
    folder = args.authorized_keys or default_authorized_keys()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", args.name or public[:12])
    path = folder / f"{name}.key"
    path.write_text(_cert_text(public.encode("ascii"), None), encoding="utf-8")
    folder.touch()  # the daemon re-reads the folder when its mtime changes
    print(f"authorised {public} in {path}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        with Client(args.endpoint, timeout=args.timeout) as client:
            info = client.status()
    except NeuralStyleError as exc:
        print(daemon_error_text(exc, args.endpoint), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(format_status(info))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    try:
        with Client(args.endpoint, timeout=args.timeout) as client:
            info = client.status()
            client.shutdown()
    except NeuralStyleError as exc:
        print(daemon_error_text(exc, args.endpoint), file=sys.stderr)
        return 1
    pid, conn_file = int(info.get("pid", 0)), info.get("connection_file") or ""
    if _wait_gone(pid, Path(conn_file) if conn_file else None, args.wait):
        print(f"neural-style daemon (pid {pid}) at {info.get('endpoint')} stopped.")
        return 0
    print(f"The daemon (pid {pid}) acknowledged but has not exited after {args.wait:g} s.")
    return 1


def daemon_error_text(exc: NeuralStyleError, endpoint: str | None) -> str:
    """A daemon's (or the client's) error as the CLI says it: shared/errors.py's texts, the
    same ones the GIMP plug-in shows."""
    return user_message(
        exc.code, exc.message, exc.hint, died=isinstance(exc, DaemonDied),
        endpoint=endpoint or "", client="command", size="--size",
    )  # fmt: skip


def _wait_gone(pid: int, conn_file: Path | None, wait: float) -> bool:
    """Wait until the process is gone and its connection file removed."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        file_gone = conn_file is None or not conn_file.exists()
        if file_gone and (pid <= 0 or not _process_running(pid)):
            return True
        time.sleep(0.05)
    return False


def _process_running(pid: int) -> bool:
    """Alive and not a zombie (an exited child its parent has not reaped yet)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ray_lines(info: dict[str, Any], worker: dict[str, Any]) -> list[str]:
    """The ray backend's part of ``status``: the cluster, then one line per actor."""
    actors = info.get("actors") or []
    state = worker.get("state")
    why = f" ({worker.get('error')})" * bool(worker.get("error") and state != "ready")
    lines = [
        f"  backend:   ray at {worker.get('address')}: {state}{why}; "
        f"{info.get('capacity', 0)} of {len(actors)} actors up, "
        f"{worker.get('requeued', 0)} jobs moved off lost actors, "
        f"{worker.get('restarts', 0)} reconnects"
    ]
    for a in actors:
        doing = f"busy (step {a.get('step', 0)})" if a.get("state") == "busy" else a.get("state")
        styles = ", ".join(a.get("cached_styles") or []) or "none"
        where = f"node {a.get('node') or '?'} ({a.get('host') or '?'} {a.get('ip') or ''})"
        restarts = f", {a.get('restarts')} restarts" * bool(a.get("restarts"))
        lines.append(
            f"    {a.get('name')}: {doing}, {where}, {a.get('device') or '?'}, "
            f"{a.get('threads') or '?'} threads{restarts}; cached styles: {styles}"
        )
    return lines


def format_status(info: dict[str, Any]) -> str:
    """A short human summary of ``status`` output."""
    weights = info.get("weights") or {}
    jobs = info.get("jobs") or {}
    queue = info.get("queue") or {}
    running = info.get("running")
    doing = "idle"
    several = info.get("running_jobs") or []
    if len(several) > 1:
        doing = (
            f"running {len(several)} jobs ("
            + ", ".join(f"step {r.get('step', 0)}/{r.get('total', 0)}" for r in several)
            + ")"
        )
    elif running:
        doing = f"running step {running.get('step', 0)}/{running.get('total', 0)}"
    synthetic = " (synthetic test weights: results are not artistic)" * bool(
        weights.get("synthetic")
    )
    lines = [
        f"neural-style daemon {info.get('server')} (protocol {info.get('protocol')}), "
        f"pid {info.get('pid')}, up {_duration(info.get('uptime_s', 0))}",
        f"  endpoint:  {info.get('endpoint')}{'  (CURVE)' if info.get('curve') else ''}",
        f"  device:    {info.get('device')}",
        f"  weights:   {weights.get('path')}  sha256 {str(weights.get('sha256', ''))[:12]}"
        f"{synthetic}",
        f"  now:       {doing}; {queue.get('waiting', 0)} waiting (max {queue.get('max')})",
        f"  jobs:      {jobs.get('done', 0)} done, {jobs.get('cancelled', 0)} cancelled, "
        f"{jobs.get('failed', 0)} failed, {jobs.get('busy', 0)} refused (busy); "
        f"{jobs.get('style_cache_hits', 0)} style cache hits",
    ]
    if info.get("step_s_per_mpx"):
        by_side = (info.get("step_s_by_side") or {}).items()
        sides = ", ".join(f"{s} s at {k} px" for k, s in by_side)
        rate = info["step_s_per_mpx"]
        lines.append(f"  step time: {rate:.3g} s per step per megapixel ({sides})")
    worker = info.get("worker") or {}
    if worker.get("backend") == "ray":
        lines += _ray_lines(info, worker)
    elif worker:
        exited = f"; last exit: {worker['last_exit']}" * bool(worker.get("last_exit"))
        pid = f" pid {worker['pid']}," * bool(worker.get("pid"))
        lines.append(
            f"  worker:    {worker.get('kind')}{pid} {worker.get('state')}, "
            f"{worker.get('restarts', 0)} restarts{exited}"
        )
    if info.get("rss_bytes"):
        lines.append(f"  memory:    {info['rss_bytes'] / 2**20:.0f} MiB resident")
    if info.get("connection_file"):
        lines.append(f"  conn file: {info['connection_file']}")
    if info.get("log_file"):
        lines.append(f"  log file:  {info['log_file']}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def setup_logging(log_file: Path | None, level: int = logging.INFO) -> Path | None:
    """Log to stderr and to a rotating file (default: the user log dir's daemon.log)."""
    logger = logging.getLogger("neural_style")
    logger.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    logger.addHandler(stderr)
    if log_file is None:
        import platformdirs

        log_file = Path(platformdirs.user_log_dir("neural-style")) / "daemon.log"
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=5 * 2**20, backupCount=3, encoding="utf-8"
        )
    except OSError as exc:
        logger.warning("cannot write the log file %s: %s", log_file, exc)
        return None
    handler.setFormatter(fmt)
    logger.addHandler(handler)
    return log_file


# --------------------------------------------------------------------------- remote stylize


@dataclass
class DaemonInfo:
    """Which daemon ran a job: for the CLI's JSON report."""

    endpoint: str
    device: str
    weights: dict[str, Any]
    """``{"path", "sha256", "synthetic"}`` of the daemon's VGG-19 weights."""
    server_version: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    """The daemon's statistics for the job (queue wait, first-step time, losses…)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "device": self.device,
            "weights": dict(self.weights),
            "server_version": self.server_version,
            "stats": dict(self.stats),
        }


@dataclass
class RemoteStylizeResult(StylizeResult):
    """A :class:`StylizeResult` that also says which daemon produced it."""

    daemon: DaemonInfo | None = None


def find_daemon(endpoint: str | None = None) -> str | None:
    """The endpoint of a daemon that answers a ping within ~1 s, else None.

    A daemon that answers but refuses us (wrong key, other version) still counts: the
    caller's next request then fails with that precise error instead of silently running
    locally.
    """
    try:
        with Client(endpoint, timeout=FIND_TIMEOUT_S) as client:
            with contextlib.suppress(Unauthenticated, VersionMismatch):
                client.ping()
            return client.endpoint
    except NeuralStyleError:
        return None


def stylize_remote(
    endpoint: str | None,
    content: np.ndarray,
    styles: list[np.ndarray],
    params: StyleParams,
    on_iterate: Callable[[Step], None] | None = None,
    mask: np.ndarray | None = None,
    *,
    timeout: float = 10.0,
    init: np.ndarray | None = None,
) -> RemoteStylizeResult:
    """Run one job on a daemon; same contract as ``StyleTransfer.stylize`` (``init``: the
    starting image at the content's size, sent as ``submit.init``).

    ``on_iterate`` sees the (throttled) progress messages, with the preview attached on
    preview steps; ``result.iterates`` has every step. Ctrl-C cancels the job on the daemon.
    """
    try:
        return _stylize_remote(endpoint, content, styles, params, on_iterate, mask, timeout, init)
    except NeuralStyleError as exc:  # same type, worded as the plug-in words it
        exc.message, exc.hint = daemon_error_text(exc, endpoint), ""
        exc.args = (exc.message,)
        raise


def _stylize_remote(
    endpoint: str | None,
    content: np.ndarray,
    styles: list[np.ndarray],
    params: StyleParams,
    on_iterate: Callable[[Step], None] | None,
    mask: np.ndarray | None,
    timeout: float,
    init: np.ndarray | None = None,
) -> RemoteStylizeResult:
    with Client(endpoint, timeout=timeout) as client:
        welcome = client.hello()
        job = client.submit(
            image_from_array(content),
            [image_from_array(s) for s in styles],
            params.to_dict(),
            mask=image_from_array(mask) if mask is not None else None,
            init=image_from_array(init) if init is not None else None,
            preview_every=params.preview_every,
            preview_max_side=protocol.MAX_PREVIEW_SIDE,
        )
        done = _follow(job, on_iterate)  # Ctrl-C: Job.wait cancels the job first
        daemon = DaemonInfo(
            endpoint=client.endpoint,
            device=str(welcome.get("device", "")),
            weights=dict(welcome.get("weights", {})),
            server_version=str(welcome.get("server", "")),
            stats=dict(done.stats),
        )
    return _to_result(done, content, daemon)


def _follow(job: Job, on_iterate: Callable[[Step], None] | None) -> Done:
    """Wait for the job; progress becomes ``Step`` records, with their previews attached."""
    previews: dict[int, np.ndarray] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, Preview):
            previews[event.step] = array_from_image(event.image).astype(np.float32) / 255.0
        elif isinstance(event, Progress) and on_iterate is not None:
            on_iterate(event.to_step(previews.pop(event.step, None)))

    return job.wait(on_event, poll_ms=250)


def _to_result(done: Done, content: np.ndarray, daemon: DaemonInfo) -> RemoteStylizeResult:
    image = np.array(array_from_image(done.image))  # own the memory, writable
    if content.ndim == 2 and image.shape[2] == 1:
        image = image[:, :, 0]
    stats = done.job_stats
    return RemoteStylizeResult(
        image=image,
        iterates=list(done.iterates),
        stopped=stats.stopped,
        elapsed=stats.elapsed_s,
        style_cache_hit=stats.style_cache_hit,
        work_size=(int(stats.work_size[0]), int(stats.work_size[1])),
        precision=stats.precision,
        daemon=daemon,
    )


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m neural_style.daemon.service_cli serve …``).

    The product's entry point is ``neural-style`` (daemon/cli.py); this one lets the tests
    and the benchmarks start a daemon without depending on the rest of the CLI.
    """
    parser = argparse.ArgumentParser(prog="neural-style")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
