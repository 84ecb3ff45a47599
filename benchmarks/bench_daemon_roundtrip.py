"""Daemon overheads: what the protocol costs around the optimisation, and warm-start latency.

    python benchmarks/bench_daemon_roundtrip.py [--weights W] [--json-out FILE]

1. Round trip of a 4096x4096 RGBA job (u8 and f32) besides the optimisation: the client's
   wall time from submit to result, minus the engine's own time (``stats.elapsed_s``),
   i.e. encode + HMAC + transfer + validate + decode, both directions. The job itself is
   tiny (working size 32, 1 step) so the difference is the protocol. Also timed alone:
   encode (HMAC) and decode (HMAC + validation) of the submit in this process.
2. First-step latency of a second job with the same style (style targets cached, model
   warm) vs a steady optimiser step, and vs a first job with a new style.

Starts its own daemon (synthetic weights unless --weights) on a free loopback port.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from neural_style.daemon.service.codec import image_from_array as image
from neural_style.daemon.service.harness import Daemon, synthetic_weights
from neural_style.shared import protocol
from neural_style.shared.client import Done
from neural_style.shared.protocol import Message


def run_job(client, content, style, params, repeat: int = 1) -> list[dict]:
    """Submit → Done, ``repeat`` times; client wall time and the daemon's stats."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = client.stylize(image(content), [image(style)], params)
        wall = time.perf_counter() - t0
        assert isinstance(done, Done)
        out.append({"wall_s": wall, **done.stats})
    return out


def local_codec(content: np.ndarray, style: np.ndarray, key: bytes) -> dict[str, float]:
    """Encode and decode the submit message in-process (no sockets)."""
    msg = Message("submit", {"job": "bench", "params": {"size": 32},
                             "content": image(content), "styles": [image(style)]})  # fmt: skip
    t0 = time.perf_counter()
    frames = protocol.encode(msg, key)
    t1 = time.perf_counter()
    protocol.decode(frames, key)
    t2 = time.perf_counter()
    return {"encode_s": t1 - t0, "decode_s": t2 - t1}


def roundtrip(daemon: Daemon, dtype: str) -> dict:
    rng = np.random.default_rng(0)
    if dtype == "u8":
        content = rng.integers(0, 255, (4096, 4096, 4), dtype=np.uint8)
    else:
        content = rng.random((4096, 4096, 4), dtype=np.float32)
    style = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    params = {"size": 32, "iterations": 1}
    with daemon.client(timeout=60.0) as c:
        runs = run_job(c, content, style, params, repeat=3)
    best = min(runs, key=lambda r: r["wall_s"])
    codec = local_codec(content, style, daemon.key)
    return {
        "image": f"4096x4096x4 {dtype}",
        "bytes_each_way": int(content.nbytes),
        "client_wall_s": best["wall_s"],
        "engine_s": best["elapsed_s"],
        "overhead_s": best["wall_s"] - best["elapsed_s"],
        "client_encode_s": codec["encode_s"],
        "client_decode_s": codec["decode_s"],
    }


def warm_start(daemon: Daemon, size: int, iterations: int) -> dict:
    rng = np.random.default_rng(1)
    style_a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    style_b = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    contents = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(3)]
    params = {"size": size, "iterations": iterations}
    with daemon.client(timeout=60.0) as c:
        first = run_job(c, contents[0], style_a, params)[0]
        second = run_job(c, contents[1], style_a, params)[0]
        new_style = run_job(c, contents[2], style_b, params)[0]
    return {
        "size": size,
        "iterations": iterations,
        "first_job_first_step_s": first["first_step_s"],
        "second_job_first_step_s": second["first_step_s"],
        "second_job_style_cache_hit": second["style_cache_hit"],
        "new_style_first_step_s": new_style["first_step_s"],
        "steady_step_s": second["step_s"],
        "second_job_queue_and_protocol_s": second["wall_s"] - second["elapsed_s"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="VGG-19 weights (default: synthetic)")
    parser.add_argument("--size", type=int, default=256, help="working size for part 2")
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        weights = args.weights or synthetic_weights(workdir)
        daemon = Daemon(weights, workdir).wait_ready()
        try:
            with daemon.client() as c:
                device = c.hello()["device"]
            results = {
                "device": device,
                "machine": platform.processor() or platform.machine(),
                "roundtrip": [roundtrip(daemon, "u8"), roundtrip(daemon, "f32")],
                "warm_start": warm_start(daemon, args.size, args.iterations),
            }
        finally:
            daemon.stop()
    for r in results["roundtrip"]:
        print(
            f"{r['image']}: {r['bytes_each_way'] / 2**20:.0f} MiB each way, client wall "
            f"{r['client_wall_s']:.3f} s, engine {r['engine_s']:.3f} s -> protocol overhead "
            f"{r['overhead_s']:.3f} s (in-process encode {r['client_encode_s']:.3f} s, "
            f"decode {r['client_decode_s']:.3f} s)"
        )
    w = results["warm_start"]
    print(
        f"size {w['size']}: first step of job 1 {w['first_job_first_step_s']:.3f} s, of job 2 "
        f"(same style, cache hit={w['second_job_style_cache_hit']}) "
        f"{w['second_job_first_step_s']:.3f} s, of job 3 (new style) "
        f"{w['new_style_first_step_s']:.3f} s; steady step {w['steady_step_s']:.3f} s"
    )
    print(json.dumps(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
