"""The daemon's settings (``neural-style serve`` options)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neural_style.shared import limits
from neural_style.shared.defaults import DEFAULT_ENDPOINT


@dataclass
class ServerConfig:
    endpoint: str = DEFAULT_ENDPOINT
    weights: str | None = None
    device: str = "auto"
    max_pixels: int = limits.MAX_IMAGE_PIXELS
    queue_size: int = 8
    #: None: ``NEURAL_STYLE_CONNECTION_FILE`` or the runtime dir's file for the endpoint.
    connection_file: Path | None = None
    #: zmq certificate of the server key pair; None: the pair kept in ``state_dir``.
    curve_secret_key: Path | None = None
    #: Serve NULL (no CURVE) on a loopback endpoint: any local process can then connect
    #: and make libzmq buffer unbounded multipart messages. Off unless asked for.
    insecure_null: bool = False
    #: Where the daemon keeps its CURVE key pairs; None: ``$XDG_STATE_HOME/neural-style``.
    state_dir: Path | None = None
    #: None: a fresh random key (written to the connection file).
    key: bytes | None = None
    log_file: Path | None = None
    #: Folder of allowed CURVE client public keys (zmq.auth ``*.key`` files); None: the
    #: default folder (``~/.config/neural-style/authorized_keys``). The daemon's own
    #: user's client key is always allowed.
    authorized_keys: Path | None = None
    max_connections: int = limits.MAX_CONNECTIONS
    max_jobs_per_client: int = limits.MAX_JOBS_PER_CLIENT
    #: Largest estimated peak memory of one job, and bytes of received images that may
    #: wait in the queue; None: sized from the machine's RAM (80 % and 25 %).
    max_job_bytes: int | None = None
    max_queue_bytes: int | None = None
    #: A job running longer is stopped and answered ``time_limit``; 0: no limit.
    job_time_limit_s: float = 48 * 3600.0
    #: Where the engine runs: "process" (a supervised worker process: a crash or a hang
    #: costs one job) or "thread" (in the daemon's own process).
    worker: str = "process"
    #: Where jobs run: "local" (this machine: ``worker``) or "ray" (a Ray cluster's actors,
    #: :mod:`.ray_backend`; needs the ``cluster`` extra).
    backend: str = "local"
    #: The cluster: "auto" (the one this machine belongs to) or HOST:PORT of its head.
    ray_address: str = "auto"
    #: Actors to start; 0: one per GPU of the cluster, else one per ``worker_cpus`` CPUs.
    workers: int = 0
    #: CPU cores (and TensorFlow threads) per CPU actor.
    worker_cpus: int = 1
    verbose: bool = False
