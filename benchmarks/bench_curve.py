"""What CURVE costs: the largest allowed image's request and result through ZeroMQ with
CURVE vs NULL, as a share of one 512 px optimiser step.

    python benchmarks/bench_curve.py [--dtype u8|f32 ...] [--repeat N] [--no-step]
                                     [--weights W] [--json-out FILE]

One DEALER and one ROUTER on a loopback TCP port in this process, as the client and the
daemon talk: the client sends a ``submit`` (content of ``limits.MAX_IMAGE_PIXELS``, RGBA,
one 32x32 style; frames from :func:`protocol.encode`, HMAC included), the router sends a
``result`` of the same size back. The round trip is timed with CURVE (keys as the daemon
makes them) and with NULL; the difference is what encrypting and decrypting both payloads
costs (libsodium's XSalsa20-Poly1305 in libzmq, one core each side). A 512 px step of the
engine (synthetic VGG-19 weights unless --weights: same layers, same time) is timed for
scale. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from neural_style.shared import limits, protocol
from neural_style.shared.protocol import ImageBuf, Message

SIDE = int(limits.MAX_IMAGE_PIXELS**0.5)


def _pair(curve: bool) -> tuple[zmq.Socket, zmq.Socket]:
    ctx = zmq.Context.instance()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.setsockopt(zmq.LINGER, 0)
    if curve:
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        router.curve_server = True
        router.curve_publickey, router.curve_secretkey = server_public, server_secret
        dealer.curve_serverkey = server_public
        dealer.curve_publickey, dealer.curve_secretkey = client_public, client_secret
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    return router, dealer


def _messages(dtype: str, key: bytes) -> tuple[list[Any], list[Any]]:
    channels, itemsize = 4, protocol.DTYPES[dtype]
    pixels = np.zeros(SIDE * SIDE * channels * itemsize, np.uint8)
    content = ImageBuf(SIDE, SIDE, channels, dtype, memoryview(pixels))
    style = ImageBuf(32, 32, 3, "u8", bytes(32 * 32 * 3))
    submit = Message("submit", {"job": "bench", "params": {"size": 512},
                                "content": content, "styles": [style]})  # fmt: skip
    stats = {"elapsed_s": 1.0, "steps": 1}
    result = Message("result", {"job": "bench", "image": content, "stats": stats})
    return protocol.encode(submit, key), protocol.encode(result, key)


def roundtrip(curve: bool, dtype: str, repeat: int) -> dict[str, Any]:
    """Median seconds of submit -> result over ``repeat`` runs (after one warm-up)."""
    key = b"k" * 32
    submit, result = _messages(dtype, key)
    router, dealer = _pair(curve)
    times = []
    try:
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            dealer.send_multipart(submit, copy=False)
            ident, *_ = router.recv_multipart(copy=False)
            router.send_multipart([ident, *result], copy=False)
            dealer.recv_multipart(copy=False)
            times.append(time.perf_counter() - t0)
    finally:
        router.close()
        dealer.close()
    payload = sum(len(memoryview(f)) for f in submit) + sum(len(memoryview(f)) for f in result)
    return {"median_s": statistics.median(times[1:]), "runs_s": times[1:], "bytes": payload}


def step_512(weights: str | None) -> float:
    """Median seconds of one steady optimiser step at 512 px (default parameters)."""
    from neural_style.daemon.engine import StyleTransfer
    from neural_style.daemon.engine.params import StyleParams

    if weights is None:
        from neural_style.daemon.engine.weights import write_synthetic_weights

        folder = Path(tempfile.mkdtemp(prefix="bench-curve-"))
        weights = str(write_synthetic_weights(folder / "vgg19_synth.h5", seed=0))
    engine = StyleTransfer.load(weights)
    rng = np.random.default_rng(0)
    content = rng.integers(0, 255, (384, 512, 3), np.uint8)
    style = rng.integers(0, 255, (256, 256, 3), np.uint8)
    marks: list[float] = []
    engine.stylize(content, [style], StyleParams(size=512, iterations=8),
                   lambda s: marks.append(s.elapsed_s))  # fmt: skip
    return float(np.median(np.diff(marks)[2:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", action="append", choices=sorted(protocol.DTYPES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-step", action="store_true", help="skip the 512 px step")
    parser.add_argument("--weights", help="VGG-19 weights for the step (default synthetic)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for dtype in args.dtype or ["u8"]:
        null = roundtrip(False, dtype, args.repeat)
        curve = roundtrip(True, dtype, args.repeat)
        rows.append({"dtype": dtype, "side": SIDE, "payload_mib": null["bytes"] / 2**20,
                     "null_s": null["median_s"], "curve_s": curve["median_s"],
                     "curve_cost_s": curve["median_s"] - null["median_s"],
                     "null_runs_s": null["runs_s"], "curve_runs_s": curve["runs_s"]})  # fmt: skip
    step = None if args.no_step else step_512(args.weights)
    print(f"{'image':>16} {'request+result':>15} {'NULL':>8} {'CURVE':>8} {'CURVE cost':>11}"
          f"{'  / 512 px step' if step else ''}")  # fmt: skip
    for r in rows:
        share = f"  {r['curve_cost_s'] / step:10.2f}x" if step else ""
        if step:
            r["cost_per_step"] = r["curve_cost_s"] / step
        times = f"{r['null_s']:7.3f}s {r['curve_s']:7.3f}s {r['curve_cost_s']:10.3f}s"
        print(f"{SIDE}x{SIDE} RGBA {r['dtype']:>3} {r['payload_mib']:11.0f} MiB {times}{share}")
    if step:
        print(f"one 512 px step: {step:.3f} s")
    report = {"bench": "curve", "python": sys.version.split()[0], "machine": platform.machine(),
              "processor": platform.processor(), "libzmq": zmq.zmq_version(),
              "repeat": args.repeat, "step_512_s": step, "rows": rows}  # fmt: skip
    line = json.dumps(report)
    print(line)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
