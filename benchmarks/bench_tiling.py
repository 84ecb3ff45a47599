"""Peak memory and time of ONE tiled loss + gradient at large output sizes.

Why a subprocess per size: ``ru_maxrss`` is a high-water mark for the whole process, so each
size gets a fresh interpreter and its own peak. The image is 3:2 (long side x 2/3), the tile
is :func:`neural_style.daemon.engine.tiling.auto_tile`'s choice unless ``--tile`` is given (when it
says the whole image fits, the run is one tile, i.e. the untiled cost), and the weights are
synthetic unless ``--weights`` is given (the cost does not depend on their values).

    .venv/bin/python benchmarks/bench_tiling.py --sizes 1024,2048 [--timeout 1200]

Prints one line per size, then a JSON list of the records.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def child(long_side: int, tile: int | None, halo: int, weights: Path) -> dict[str, Any]:
    """Run one tiled loss_and_grad in this process; return its record."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from neural_style.daemon.engine import tiling
    from neural_style.daemon.engine.vgg import VGGFeatures, load_keras_vgg19

    t_load = time.perf_counter()
    features = VGGFeatures(load_keras_vgg19(weights))
    load_s = time.perf_counter() - t_load
    width, height = long_side, round(long_side * 2 / 3)
    chosen = tile or tiling.auto_tile(height, width, halo)
    run_tile = chosen or tiling.ALIGN * math.ceil(long_side / tiling.ALIGN)  # one tile
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (1, height, width, 3)).astype(np.float32)
    target = tf.zeros((1, height // 16, width // 16, 512))
    grams = tuple(tf.zeros((1, c, c)) for c in (64, 128, 256, 512, 512))
    weights_t = tf.constant([1.0, 1.0, 1.0])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    total, *_ = tiling.tiled_loss_and_grad(features, x, target, grams, weights_t, run_tile, halo)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "long_side": long_side,
        "width": width,
        "height": height,
        "tile": chosen,
        "halo": halo,
        "tiles": len(tiling.tile_grid(height, width, run_tile, halo)),
        "seconds": round(seconds, 2),
        "peak_rss_bytes": peak,
        "peak_rss_gib": round(peak / 2**30, 2),
        "rss_before_gib": round(rss_before / 2**30, 2),
        "weights_load_s": round(load_s, 2),
        "loss_finite": bool(np.isfinite(float(total))),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048", help="long sides, comma-separated")
    parser.add_argument("--tile", type=int, default=None, help="force a tile side (px)")
    parser.add_argument("--halo", type=int, default=96)
    parser.add_argument("--weights", type=Path, default=None, help="VGG-19 notop .h5")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per size")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print(json.dumps(child(args.child, args.tile, args.halo, args.weights)), flush=True)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            from neural_style.daemon.engine.weights import write_synthetic_weights

            weights = write_synthetic_weights(Path(tmp) / "vgg19_synth.h5", seed=0)
        records: list[dict[str, Any]] = []
        for size in (int(s) for s in args.sizes.split(",")):
            cmd = [sys.executable, __file__, "--child", str(size), "--halo", str(args.halo)]
            cmd += ["--weights", str(weights)]
            if args.tile:
                cmd += ["--tile", str(args.tile)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                record: dict[str, Any] = {"long_side": size, "error": f"timeout {args.timeout}s"}
            else:
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode == 0 and lines:
                    record = json.loads(lines[-1])
                else:
                    tail = proc.stderr.strip().splitlines()[-3:]
                    record = {"long_side": size, "error": f"rc {proc.returncode}: {tail}"}
            records.append(record)
            if "error" in record:
                print(f"{size:5d} px: {record['error']}", flush=True)
            else:
                print(
                    f"{size:5d} px ({record['width']}x{record['height']}): tile "
                    f"{record['tile']} halo {record['halo']} ({record['tiles']} tiles), "
                    f"{record['seconds']:.1f} s, peak RSS {record['peak_rss_gib']:.2f} GiB",
                    flush=True,
                )
        print(json.dumps(records, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
