"""``neural-style stylize``: one picture, on a daemon when one answers, else in this process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neural_style.daemon.cli import job_options, remote
from neural_style.daemon.cli.reports import (
    check_report_path,
    peak_rss_mb,
    synthetic_warning,
    write_json_atomic,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from neural_style.daemon.engine.params import StyleParams, StylizeResult
    from neural_style.shared.records import Step


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``stylize``."""
    unset = argparse.SUPPRESS  # only flags actually given override the preset/defaults
    p = sub.add_parser(
        "stylize",
        help="stylize an image file after one or more style images",
        description="Stylize CONTENT after STYLE (several STYLEs are blended). "
        "Uses a running daemon when one answers, else runs in this process. "
        + job_options.DEFAULTS_NOTE,
        argument_default=unset,
    )
    p.add_argument("content", help="content image file")
    p.add_argument("styles", nargs="+", metavar="style", help="style image file(s)")
    p.add_argument("-o", "--output", required=True, help="output image file (.png, .jpg, …)")
    job_options.add_job_options(p)
    p.add_argument(
        "--mask", help="grayscale image: white = stylize, black = keep the content, gray blends"
    )
    p.add_argument("--report", help="write a JSON report of the run here")
    p.set_defaults(
        func=cmd_stylize,
        report=None,
        mask=None,
    )


def load_init_image(path: str, content: np.ndarray) -> np.ndarray:
    """The ``--init`` image as the engine takes it: float32 at the content's size.

    The engine starts every scale from the init resized, as it does the content; it wants
    it at the content's size (a refine of a ``--no-keep-size`` result is smaller).
    """
    from neural_style.daemon.engine import images

    if not Path(path).exists():
        modes = ", ".join(job_options.init_modes())
        raise images.bad(
            f"--init {path}: no such image file.",
            f"Name an image file to start from, or one of {modes}.",
        )
    init = images.as_hwc(images.load_image(path, "init image"), "init image")
    height, width = content.shape[:2]
    if init.shape[:2] == (height, width):
        return init
    ih, iw = init.shape[:2]
    if abs(iw / ih - width / height) > 0.01 * width / height:
        print(
            f"neural-style: note: the init image ({iw}x{ih}) is stretched to the content's "
            f"{width}x{height}",
            file=sys.stderr,
        )
    return images.resize(images.to_float(init), (width, height))


def cmd_stylize(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine import images

    params = job_options.params_from_args(args)
    content = images.load_image(args.content, "content image")
    styles = [images.load_image(s, "style image") for s in args.styles]
    mask = images.load_image(args.mask, "mask") if args.mask else None
    init_path = job_options.init_image_path(args)
    init = load_init_image(init_path, content) if init_path else None
    output = images.check_writable(args.output)
    report_path = check_report_path(Path(args.report)) if args.report else None

    bar = _ProgressBar(params.iterations, disabled=args.quiet)
    try:
        result, meta = _run(args, content, styles, params, bar.update, mask, init)
    finally:
        bar.close()
    images.save_image(result.image, output)
    height, width = result.image.shape[:2]
    if meta["weights"]["synthetic"]:
        print(synthetic_warning(), file=sys.stderr)
    if report_path:
        report = {
            "synthetic": meta["weights"]["synthetic"],
            "weights": meta["weights"],
            "device": meta["device"],
            "mode": meta["mode"],
            **({"daemon": meta["daemon"]} if "daemon" in meta else {}),
            "params": params.to_dict(),
            **({"init_image": str(Path(init_path).resolve())} if init_path else {}),
            "iterations": [it.to_report() for it in result.iterates],
            "stopped": result.stopped,
            "style_cache_hit": result.style_cache_hit,
            "work_size": {"width": result.work_size[0], "height": result.work_size[1]},
            "precision": result.precision,
            "total_time_s": result.elapsed,
            "peak_rss_mb": peak_rss_mb(),
            "output": {"path": str(output.resolve()), "width": width, "height": height},
        }
        write_json_atomic(report, report_path)
    if not args.quiet:
        print(f"wrote {output} ({width}x{height}) in {result.elapsed:.1f} s", file=sys.stderr)
    return 0


def _run(
    args: argparse.Namespace,
    content: np.ndarray,
    styles: list[np.ndarray],
    params: StyleParams,
    on_iterate: Callable[[Step], None],
    mask: np.ndarray | None = None,
    init: np.ndarray | None = None,
) -> tuple[StylizeResult, dict[str, Any]]:
    """Run on a daemon or in-process; (result, {weights, device, mode}). An ``init`` image
    travels to a daemon as ``submit.init``."""
    endpoint = remote.daemon_endpoint(args)
    if endpoint is not None:
        result = remote.stylize_remote(
            endpoint, content, styles, params, on_iterate, mask, init=init
        )
        assert result.daemon is not None
        return result, {
            "weights": result.daemon.weights,
            "device": result.daemon.device,
            "mode": "daemon",
            "daemon": result.daemon.to_dict(),
        }
    from neural_style.daemon.engine import StyleTransfer

    engine = StyleTransfer.load(args.weights)
    if engine.weights.synthetic:
        print(synthetic_warning(), file=sys.stderr)

    def callback(it: Step) -> None:
        on_iterate(it)

    local = engine.stylize(content, styles, params, callback, mask=mask, init=init)
    return local, {"weights": engine.weights.to_dict(), "device": engine.device, "mode": "local"}


class _ProgressBar:
    """tqdm on stderr: steps, losses, ETA."""

    def __init__(self, total: int, disabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            unit="step",
            disable=disabled,
            file=sys.stderr,
            dynamic_ncols=True,
            desc="stylize",
        )
        self._last = 0

    def update(self, it: Any) -> None:
        self._bar.update(it.step - self._last)
        self._last = it.step
        self._bar.set_postfix(
            loss=f"{it.loss:.3g}",
            content=f"{it.content:.3g}",
            style=f"{it.style:.3g}",
            tv=f"{it.tv:.3g}",
            refresh=False,
        )

    def close(self) -> None:
        self._bar.close()
