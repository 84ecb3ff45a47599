"""Best fp32 loss after fixed evaluation budgets at one scale, for StyleParams variants.

    nice -n 10 .venv/bin/python benchmarks/bench_budget.py --weights /tmp/standin.h5 \\
        --size 128 --pair tubingen:starry_night \\
        '{"name": "lbfgs", "optimizer": "lbfgs", "iterations": 80}' \\
        '{"name": "lbfgs-pyramid", "optimizer": "lbfgs", "iterations": 80,
          "parametrization": "pyramid", "pyramid_decay": 0.7}'

A quick screen before ``bench_evals.py``: each variant (JSON: ``name`` and StyleParams
fields; ``size`` is ``--size``, one scale, fp32 unless given) runs from the photo, and the
line printed is the lowest loss within the first 25, 50, 80, 100, 150, 200 and 300 steps
(L-BFGS evaluations or Adam steps, whichever the variant runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench_evals import load_pair

MARKS = (25, 50, 80, 100, 150, 200, 300)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--weights", help="VGG-19 weights (the trained stand-in)")
    ap.add_argument("--size", type=int, default=128, help="working long side (default 128)")
    ap.add_argument("--pair", default="tubingen:starry_night", help="content:style")
    ap.add_argument("variants", nargs="+", help="JSON objects: name and StyleParams fields")
    args = ap.parse_args(argv)
    from neural_style.daemon.engine import StyleTransfer
    from neural_style.daemon.engine.params import StyleParams

    engine = StyleTransfer.load(args.weights)
    content, style = load_pair(args.pair, args.size)
    for text in args.variants:
        cfg = json.loads(text)
        name = cfg.pop("name")
        t0 = time.perf_counter()
        params = StyleParams.from_dict({"size": args.size, "precision": "fp32", **cfg})
        losses = [it.loss for it in engine.stylize(content, [style], params).iterates]
        marks = " ".join(f"@{n} {min(losses[:n]):.4g}" for n in MARKS if n <= len(losses))
        print(f"{name:28s} {marks} ({len(losses)} steps, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
