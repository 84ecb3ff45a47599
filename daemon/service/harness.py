"""A real ``neural-style serve`` subprocess on a free loopback port, for the tests and the
benchmarks: start it, wait until its connection file names it, talk to it, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neural_style.shared import connection
from neural_style.shared.client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_env(runtime_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(connection.ENV_FILE, None)
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if runtime_dir is not None:
        env["XDG_RUNTIME_DIR"] = str(runtime_dir)
    return env


class Daemon:
    """A ``neural-style serve`` subprocess; the connection file tells when it is ready."""

    def __init__(
        self,
        weights: Path,
        workdir: Path,
        *,
        queue: int = 8,
        extra: tuple[str, ...] = (),
        use_runtime_dir: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.port = free_port()
        self.endpoint = f"tcp://{host}:{self.port}"
        self.workdir = workdir
        self.runtime_dir = workdir / "run"
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        self.log_file = workdir / "daemon.log"
        args = [
            "serve",
            "--bind",
            self.endpoint,
            "--weights",
            str(weights),
            "--queue",
            str(queue),
            "--log-file",
            str(self.log_file),
            *extra,
        ]
        if use_runtime_dir:  # let the daemon pick its per-port file name in the runtime dir
            self.connection_file: Path | None = None
        else:
            self.connection_file = workdir / "connection.json"
            args += ["--connection-file", str(self.connection_file)]
        self.stderr_path = workdir / "stderr.txt"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "neural_style.daemon.cli.serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**daemon_env(self.runtime_dir), "XDG_STATE_HOME": str(workdir / "state")},
        )
        self.key = b""
        self.info: connection.ConnectionInfo | None = None

    def wait_ready(self, timeout: float = 180.0) -> Daemon:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.stderr()}")
            info = self._read_info()
            if info is not None and info.pid == self.proc.pid:
                self.key = info.key
                self.info = info
                self.connection_file = info.path
                return self
            time.sleep(0.1)
        raise TimeoutError(f"daemon not ready after {timeout} s:\n{self.stderr()}")

    def _read_info(self) -> connection.ConnectionInfo | None:
        if self.connection_file is not None:
            return connection.read(self.connection_file)
        for path in (self.runtime_dir / "neural-style").glob("daemon*.json"):
            info = connection.read(path)
            if info is not None and connection.normalize(info.endpoint) == self.endpoint:
                return info
        return None

    def client(self, **kwargs: Any) -> Client:
        kwargs.setdefault("info", self.info)
        return Client(self.endpoint, key=self.key, **kwargs)

    def curve_options(self) -> dict[str, bytes]:
        """Socket options of a CURVE client holding the connection file's keys ({} for a
        ``--insecure-null`` daemon), for tests that speak raw ZeroMQ to the daemon."""
        info = self.info
        pair = info.client_curve_keys() if info is not None else None
        if info is None or not info.curve_server_key or pair is None:
            return {}
        return {
            "curve_serverkey": info.curve_server_key.encode("ascii"),
            "curve_publickey": pair[0],
            "curve_secretkey": pair[1],
        }

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")[-4000:]
        return ""

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


@contextlib.contextmanager
def running_daemon(weights: Path, workdir: Path, **kwargs: Any) -> Iterator[Daemon]:
    daemon = Daemon(weights, workdir, **kwargs)
    try:
        yield daemon.wait_ready()
    finally:
        daemon.stop()


def synthetic_weights(directory: Path) -> Path:
    """Write the seeded synthetic VGG-19 file once (in a subprocess: no TF in pytest)."""
    path = directory / "vgg19_synthetic.h5"
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from neural_style.daemon.engine.weights import"
                " write_synthetic_weights; write_synthetic_weights(sys.argv[1], seed=0)",
                str(path),
            ],
            check=True,
            env=daemon_env(),
            capture_output=True,
            timeout=300,
        )
    return path
