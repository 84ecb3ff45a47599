#!/usr/bin/env python3
"""A stand-in for Flatpak's ``flatpak-spawn --host`` and the session helper behind it.

A Flatpak app runs a host command with ``flatpak-spawn --host [--env=K=V]... CMD ARGS...``:
flatpak-spawn hands argv, environment additions and its own stdin/stdout/stderr to
flatpak-session-helper on the host (D-Bus ``HostCommand``, file descriptors passed along),
which starts CMD outside the sandbox in the session's environment; flatpak-spawn stays until
CMD exits, forwards SIGINT/SIGTERM to it and exits with its status. Our GIMP runs in a chroot
(tests/gimp/harness.py), which has neither D-Bus nor the host's virtual environment, so both
halves are played here over a unix socket in the shared work folder:

* run as a program (``flatpak-spawn`` on the sandbox's PATH; standard library only, any
  Python 3.9+): the sandbox side. The socket is ``$NSG_HOST_SPAWN_SOCKET``.
* ``HostSpawnHelper`` (imported by the tests): the host side, run by pytest; it records every
  request so that a test can tell who started what, and when.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

SOCKET_ENV = "NSG_HOST_SPAWN_SOCKET"
MAX_REQUEST = 256 * 1024


def parse(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """flatpak-spawn's own options (the ones the plug-in uses) and the host command."""
    env: dict[str, str] = {}
    host = False
    while argv and argv[0].startswith("--"):
        opt = argv.pop(0)
        if opt == "--host":
            host = True
        elif opt.startswith("--env="):
            key, _, value = opt[len("--env=") :].partition("=")
            env[key] = value
        elif opt == "--":
            break
        else:
            raise SystemExit(f"flatpak-spawn (test stand-in): unsupported option {opt}")
    if not host or not argv:
        raise SystemExit("usage: flatpak-spawn --host [--env=VAR=VALUE]... COMMAND [ARG]...")
    return argv, env


def main(argv: list[str]) -> int:
    """The sandbox side: ask the host to run the command, wait for its exit status."""
    command, env = parse(list(argv))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(os.environ[SOCKET_ENV])
    request = {"argv": command, "env": env, "cwd": os.getcwd()}
    socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])

    def forward(signum: int, _frame: Any) -> None:
        sock.send(json.dumps({"signal": signum}).encode())

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        data = sock.recv(MAX_REQUEST)
        if not data:  # the host side went away: like a lost session bus
            return 255
        reply = json.loads(data)
        if "error" in reply:
            print(f"flatpak-spawn: {reply['error']}", file=sys.stderr)
            return 255
        if "exit" in reply:  # killed by a signal: 128 + its number, as a shell says
            code = int(reply["exit"])
            return 128 - code if code < 0 else code


class HostSpawnHelper:
    """The host side: runs what the sandbox asks for, in ``env`` (the session's
    environment) plus the request's ``--env`` additions, and keeps a record of it."""

    def __init__(self, path: str, env: dict[str, str]) -> None:
        self.path, self.env = path, env
        self.requests: list[dict[str, Any]] = []
        self.procs: list[subprocess.Popen] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server.bind(path)
        self.server.listen(4)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        msg, fds, _flags, _addr = socket.recv_fds(conn, MAX_REQUEST, 3)
        request = json.loads(msg)
        record = {**request, "t": time.time()}
        self.requests.append(record)
        try:
            proc = subprocess.Popen(
                request["argv"], stdin=fds[0], stdout=fds[1], stderr=fds[2],
                env={**self.env, **request["env"]}, cwd=request.get("cwd") or None,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            record["error"] = str(exc)
            conn.send(json.dumps({"error": str(exc)}).encode())
            conn.close()
            return
        finally:
            for fd in fds:
                os.close(fd)
        record["pid"] = proc.pid
        self.procs.append(proc)
        threading.Thread(target=self._signals, args=(conn, proc), daemon=True).start()
        code = proc.wait()
        record["exit"] = code
        with contextlib.suppress(OSError):  # flatpak-spawn gone (GIMP quit): CMD ran on
            conn.send(json.dumps({"exit": code}).encode())
        conn.close()

    def _signals(self, conn: socket.socket, proc: subprocess.Popen) -> None:
        while proc.poll() is None:
            try:
                data = conn.recv(MAX_REQUEST)
            except OSError:
                return
            if not data:
                return  # without --watch-bus the host command outlives flatpak-spawn
            proc.send_signal(int(json.loads(data)["signal"]))

    def close(self) -> None:
        """Stop everything started (the daemon outlives GIMP, as it does for a user)."""
        self.closed = True
        self.server.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if os.path.exists(self.path):
            os.unlink(self.path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
