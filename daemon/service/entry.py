"""Starting the daemon in the foreground: refuse unsafe or clashing configurations, load
the model, then bind (the port is taken only once the daemon can serve)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from neural_style.daemon.service.config import ServerConfig
from neural_style.daemon.service.executor import Executor, ThreadExecutor
from neural_style.daemon.service.server import Server
from neural_style.daemon.service.supervisor import ProcessExecutor
from neural_style.daemon.service.worker import Engine
from neural_style.shared import connection
from neural_style.shared.defaults import is_loopback_endpoint
from neural_style.shared.errors import ErrorCode, NeuralStyleError

log = logging.getLogger("neural_style.daemon.service")


def serve(config: ServerConfig, engine_factory: Callable[[], Engine] | None = None) -> int:
    """Start the daemon in the foreground; returns the process exit status.

    2: refused configuration (non-loopback bind without CURVE, ``--insecure-null`` off
    loopback); 1: could not start (weights missing, port in use); 0: clean shutdown
    (SIGTERM, SIGINT or ``shutdown``).
    """
    refused = insecure_null_problem(config)
    if refused:
        print(f"neural-style serve: {refused}", file=sys.stderr)
        return 2
    if not is_loopback_endpoint(config.endpoint) and config.curve_secret_key is None:
        print(
            f"neural-style serve: refusing to bind {config.endpoint}: it is not a loopback "
            "address, so anyone on the network could use this daemon.\n"
            "Bind tcp://127.0.0.1:PORT, or configure CURVE encryption with "
            "--curve-secret-key FILE.",
            file=sys.stderr,
        )
        return 2
    other = running_daemon_problem(config)
    if other:
        print(f"neural-style serve: {other}", file=sys.stderr)
        return 1
    _raise_fd_limit()
    _return_big_frees()
    if config.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # before TensorFlow is imported
    try:
        server = _start(config, engine_factory)
    except NeuralStyleError as exc:
        log.error("%s", exc)
        print(f"neural-style serve: {exc}", file=sys.stderr)
        return 1
    previous = {
        sig: signal.signal(sig, server._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        server.write_connection_file()
        return server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def insecure_null_problem(config: ServerConfig) -> str:
    """Why ``--insecure-null`` is refused ("" when it is not asked for or allowed); prints
    the warning when it is allowed."""
    if not config.insecure_null:
        return ""
    if config.curve_secret_key is not None:
        return "--insecure-null and --curve-secret-key contradict each other; pick one."
    if not is_loopback_endpoint(config.endpoint):
        return (
            f"refusing --insecure-null on {config.endpoint}: NULL (unencrypted, "
            "unauthenticated handshakes) is allowed on loopback endpoints only."
        )
    warning = (
        f"WARNING: --insecure-null: {config.endpoint} accepts NULL handshakes, so any "
        "local process (a sandboxed one too) can connect and make the daemon buffer "
        "unbounded unfinished messages. Leave it out to serve CURVE."
    )
    print(f"neural-style serve: {warning}", file=sys.stderr)
    log.warning("%s", warning)
    return ""


def running_daemon_problem(config: ServerConfig) -> str:
    """Why this daemon must not start: the connection file it would write names a daemon
    that still answers, or its ipc socket is already served. "" when free to start."""
    path = Path(config.connection_file or connection.path_for(config.endpoint))
    info = connection.read(path)
    if (
        info is not None
        and info.pid != os.getpid()
        and not connection.endpoint_refuses(info.endpoint)
    ):
        from neural_style.shared.client import Client

        with (
            contextlib.suppress(NeuralStyleError),
            Client(info.endpoint, key=info.key, timeout=1.5, info=info) as client,
        ):
            client.ping()
            return (
                f"another daemon (pid {info.pid}) answers at {info.endpoint} and owns the "
                f"connection file {path}; starting would take over that file and leave it "
                "impossible to stop. Stop it first (neural-style stop), or pick another "
                "--bind and --connection-file."
            )
    transport, _, address = config.endpoint.partition("://")
    if (
        transport == "ipc"
        and os.path.exists(address)
        and not connection.endpoint_refuses(config.endpoint)
    ):
        return (
            f"another process already serves the ipc socket {address} (libzmq would "
            "silently take it over). Stop that daemon first (neural-style stop)."
        )
    return ""


#: Allocations at least this big are mmapped, so freeing one gives it back at once.
MMAP_THRESHOLD_BYTES = 8 * 2**20
#: Free memory glibc may keep at the top of its heap before trimming it.
TRIM_THRESHOLD_BYTES = 32 * 2**20


def _return_big_frees() -> None:
    """Fix glibc's mmap threshold so that big transient buffers go back to the system.

    By default glibc *raises* its mmap threshold to the size of each mmapped block freed
    (up to 32 MiB), so after one 15 MiB frame from a peer the next ones come from the heap
    and may stay in the process: an unauthenticated flood of large frames (each refused)
    left ~68 MiB behind. A fixed threshold turns that adaptation off; tensors under 8 MiB
    still reuse the heap (512 px engine step with and without: 3.12-3.34 s, no difference
    beyond noise). No-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD_BYTES)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, TRIM_THRESHOLD_BYTES)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard one (each connection costs a descriptor),
    so that the connection cap, not the fd limit, is what a flood of connections meets."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 1 << 20), hard))
    except (ImportError, ValueError, OSError):
        pass


def _start(config: ServerConfig, engine_factory: Callable[[], Engine] | None) -> Server:
    """Load the model, then bind: the port is only taken once the daemon can serve."""
    t0 = time.monotonic()
    executor: Executor
    if engine_factory is not None:
        executor = ThreadExecutor(engine_factory())
    elif config.backend == "ray":
        executor = _ray_executor(config)
    elif config.worker == "thread":
        from neural_style.daemon.engine import StyleTransfer

        executor = ThreadExecutor(StyleTransfer.load(config.weights))
    else:
        process = ProcessExecutor(config.weights, config.log_file, config.verbose)
        process.launch()
        executor = process
    if config.device == "gpu" and config.backend != "ray" and "GPU" not in executor.device.upper():
        executor.close(timeout=5.0)
        raise NeuralStyleError(
            ErrorCode.INTERNAL,
            f"--device gpu was asked for, but TensorFlow sees no GPU (it would use "
            f"{executor.device}).",
            "Install the GPU build (pip install 'neural-style-gimp[gpu]') or use --device auto.",
        )
    log.info("model loaded in %.1f s on %s", time.monotonic() - t0, executor.device)
    return Server(config, executor)


def _ray_executor(config: ServerConfig) -> Executor:
    """The cluster backend (imported only here: the local path never loads it or Ray)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise NeuralStyleError(
            ErrorCode.INTERNAL,
            "--backend ray needs Ray, which is not installed.",
            "Install the cluster extra: pip install 'neural-style-gimp[cluster]' (on the "
            "daemon's machine and on every node of the cluster); see docs/cluster.md.",
        )
    from neural_style.daemon.service.ray_backend import RayExecutor

    executor = RayExecutor(config)
    executor.launch()
    if executor.state != "ready":
        log.warning("serving without a cluster for now: %s", executor.unavailable())
    return executor
