"""``serve``, ``status``, ``stop``, ``client-key`` and ``authorize-key``: the daemon's commands.

TensorFlow is imported only by ``serve`` (status/stop must answer in a blink).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Any

from neural_style.daemon.cli.remote import daemon_error_text
from neural_style.daemon.service import ServerConfig, serve
from neural_style.shared import connection, limits, protocol
from neural_style.shared.client import Client
from neural_style.shared.errors import NeuralStyleError

log = logging.getLogger("neural_style.daemon")


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


#: ServerConfig field <- ``serve`` option (argparse dest), for every option but the log file.
CONFIG_FROM_ARGS = {
    "endpoint": "bind", "weights": "weights", "device": "device",
    "max_pixels": "max_pixels", "queue_size": "queue", "connection_file": "connection_file",
    "curve_secret_key": "curve_secret_key", "insecure_null": "insecure_null",
    "authorized_keys": "authorized_keys", "max_connections": "max_connections",
    "max_jobs_per_client": "max_jobs_per_client", "max_job_bytes": "max_job_memory",
    "max_queue_bytes": "max_queue_memory", "job_time_limit_s": "job_time_limit",
    "worker": "worker", "verbose": "verbose", "backend": "backend",
    "ray_address": "ray_address", "workers": "workers", "worker_cpus": "worker_cpus",
}  # fmt: skip


def cmd_serve(args: argparse.Namespace) -> int:
    log_file = setup_logging(args.log_file, logging.DEBUG if args.verbose else logging.INFO)
    taken = {field: getattr(args, name) for field, name in CONFIG_FROM_ARGS.items()}
    config = ServerConfig(**taken, log_file=log_file)
    return serve(config)


def cmd_client_key(args: argparse.Namespace) -> int:
    from neural_style.shared.keys import client_keypair, default_client_key_path

    path = default_client_key_path()
    public, _ = client_keypair(path)
    print(public.decode("ascii"))
    print(f"(secret key: {path}; authorise the public key on the daemon's machine with: "
          f"neural-style authorize-key {public.decode('ascii')})", file=sys.stderr)  # fmt: skip
    return 0


def cmd_authorize_key(args: argparse.Namespace) -> int:
    import re

    from neural_style.daemon.service import default_authorized_keys
    from neural_style.shared.keys import cert_text, read_public_key

    text = args.key.strip()
    public = read_public_key(text) if Path(text).is_file() else text
    if not re.fullmatch(r"[0-9A-Za-z.:+=^!/*?&<>()\[\]{}@%$#-]{40}", public):
        print(f"neural-style authorize-key: {public[:60]!r} is not a Z85 CURVE public key "
              "(40 characters).", file=sys.stderr)  # fmt: skip
        return 2
    folder = args.authorized_keys or default_authorized_keys()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", args.name or public[:12])
    path = folder / f"{name}.key"
    path.write_text(cert_text(public.encode("ascii"), None), encoding="utf-8")
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


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m neural_style.daemon.cli.serve serve …``).

    The product's entry point is ``neural-style`` (daemon/cli/entry_point.py); this one lets
    the tests and the benchmarks start a daemon without depending on the rest of the CLI.
    """
    parser = argparse.ArgumentParser(prog="neural-style")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
