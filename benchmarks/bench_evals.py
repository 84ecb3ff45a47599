"""Evaluations to the tutorial's loss: the machine-independent yardstick of docs/performance.md.

    nice -n 10 .venv/bin/python benchmarks/bench_evals.py --weights /tmp/standin.h5 --size 256 \\
        --pairs tubingen:starry_night,chelsea:the_scream,astronaut:great_wave \\
        --out /tmp/evals.jsonl --pictures /tmp/evals-pics \\
        '{"name": "balanced", "preset": "balanced"}' \\
        '{"name": "balanced-matched", "preset": "balanced", "init": "matched", "stop": true}'

For every pair it runs (or reads from the bench's cache) TensorFlow's tutorial loop, 1000 Adam
steps in fp32 at ``--size``, whose final loss is the target, then every variant: a JSON object
of StyleParams fields (``preset`` allowed; ``size`` is ``--size`` unless given) plus ``name``,
and optionally ``"stop": true`` (end the run as soon as the target is reached, so the picture
and its measures are those at the tutorial's loss). Every result is scored with the fp32 loss
on fp32 targets at the working size and the picture measures (daemon/engine/quality.py).

The cost is counted in **512 px-equivalent evaluations**: one loss + gradient at a scale of
w×h pixels counts w·h / (W·H), W×H the content fitted to a 512 px long side (a 256 px
evaluation counts 1/4, a 128 px one 1/16). ``evals_512`` is that cost up to the first
evaluation at the working size whose fp32 loss is at or below the target (None: not reached);
``evals_work`` the same in evaluations at the working size. A variant whose own loss is not the
tutorial's (``style_norm``) is checked with a separate fp32 loss every ``--check-every`` steps
at the working size (not counted as cost).

One JSON line per run (the tutorial's included, ``"name": "tutorial"``) is appended to
``--out`` as soon as it is known; a table is printed at the end. ``--sheet PNG`` instead draws
a contact sheet from an ``--out`` file and its ``--pictures`` folder. Wall times are printed
beside the counts but mean little on a shared machine: count evaluations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = Path(__file__).resolve().parents[1] / "daemon" / "samples"
MEASURES = ("structure", "texture", "color", "noise")
#: Reference long side of the cost unit.
UNIT_SIDE = 512


def find_image(name: str, kind: str) -> Path:
    """``name`` as a path, else ``<data>/<kind>/<name>.jpg``, else the samples folder's."""
    path = Path(name)
    if path.is_file():
        return path
    for folder in (DATA / kind, SAMPLES, Path("../shared/data") / kind):
        for candidate in (folder / name, folder / f"{name}.jpg", folder / f"{name}.png"):
            if candidate.is_file():
                return candidate
    raise SystemExit(f"no {kind} image {name!r} (looked in {DATA / kind} and {SAMPLES})")


def load_pair(pair: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``content:style`` names (find_image) as float RGB: the content fitted to ``size``,
    the style as it is (the engine sizes it)."""
    from neural_style.daemon.engine import images
    from neural_style.daemon.engine.bench import at_size

    content_name, style_name = pair.split(":")
    content = images.load_image(find_image(content_name, "content"))
    style = images.load_image(find_image(style_name, "styles"))
    return (
        images.to_float(at_size(content, size)),
        images.split_alpha(images.to_float(style))[0],
    )


def pair_key(content: Path, style: Path) -> str:
    return f"{content.stem}+{style.stem}"


def run_variant(
    engine: Any,
    content: np.ndarray,
    style: np.ndarray,
    cfg: dict[str, Any],
    target: float,
    size: int,
    check_every: int,
    progress: int = 0,
) -> tuple[dict[str, Any], np.ndarray]:
    """One variant on one pair: its row (without the pair's fields) and its picture."""
    from neural_style.daemon.engine import images
    from neural_style.daemon.engine.bench import fp32_loss
    from neural_style.daemon.engine.ladder import ladder_sizes
    from neural_style.daemon.engine.params import STOP, StyleNorm, StyleParams

    cfg = dict(cfg)
    name = cfg.pop("name")
    stop_at_target = bool(cfg.pop("stop", False))
    cfg.setdefault("size", size)
    cfg.setdefault("precision", "fp32")
    height, width = content.shape[:2]
    unit_w, unit_h = images.fit_long_side(width, height, UNIT_SIDE)
    proxy = cfg.get("style_norm", "none") != StyleNorm.NONE.value
    if proxy:
        cfg["preview_every"] = check_every
    params = StyleParams.from_dict(cfg)
    sizes = ladder_sizes(params, width, height)
    work = sizes[-1]
    cost_of = {max(w, h): w * h / (unit_w * unit_h) for w, h in sizes}
    state: dict[str, Any] = {"cost": 0.0, "work_evals": 0, "reached": None, "curve": []}

    def callback(it: Any) -> str | None:
        state["cost"] += cost_of[it.scale]
        at_work = it.scale == max(work)
        state["work_evals"] += int(at_work)
        loss = it.loss
        if proxy:
            loss = None
            if at_work and it.preview is not None:
                loss = fp32_loss(engine, it.preview, content, style)
        if it.step % 10 == 0 or it.step == it.total:
            state["curve"].append([it.step, it.scale, round(state["cost"], 2), it.loss])
        if progress and it.step % progress == 0:
            print(f"  {name} step {it.step} at {it.scale} px: {state['cost']:.1f} units, "
                  f"loss {it.loss:.4g}", file=sys.stderr, flush=True)  # fmt: skip
        if at_work and loss is not None and loss <= target and state["reached"] is None:
            state["reached"] = (state["cost"], state["work_evals"], it.step)
            if stop_at_target:
                return STOP
        return None

    cpu0 = time.process_time()
    run = engine.stylize(content, [style], params, callback)
    cpu = time.process_time() - cpu0
    image = np.clip(run.image, 0.0, 1.0).astype(np.float32)
    final = fp32_loss(engine, image, content, style)
    reached = state["reached"]
    row = {
        "name": name,
        "params": {k: v for k, v in cfg.items() if k != "preview_every"},
        "stop_at_target": stop_at_target,
        "target_loss": target,
        "reached": reached is not None,
        "evals_512": None if reached is None else round(reached[0], 2),
        "evals_work": None if reached is None else reached[1],
        "step_reached": None if reached is None else reached[2],
        "total_evals_512": round(state["cost"], 2),
        "steps": len(run.iterates),
        "final_loss": final,
        "vs_tutorial": round(final / target - 1, 4),
        "time_s": round(run.elapsed, 1),
        "cpu_s": round(cpu, 1),
        "curve": state["curve"],
    }
    return row, image


def tutorial_seconds(
    engine: Any, content: np.ndarray, style: np.ndarray, size: int, steps: int, total: int
) -> tuple[float, float]:
    """The tutorial loop's wall and CPU seconds for ``total`` steps, from ``steps`` of them
    run now in this process: its steps all cost the same (one fp32 Adam update at one size),
    so the first step (targets and tracing included) plus ``total - 1`` times the later
    steps' mean is its time on this machine under the load the variants run under (the
    cached run's own time may come from another machine)."""
    from neural_style.daemon.engine.params import Precision, StyleParams

    params = StyleParams(
        size=size, iterations=max(2, steps), learning_rate=0.02, precision=Precision.FP32
    )
    cpu0 = time.process_time()
    run = engine.stylize(content, [style], params)
    cpu = time.process_time() - cpu0
    first, last = run.iterates[0].elapsed, run.iterates[-1].elapsed
    per_step = (last - first) / (len(run.iterates) - 1)
    wall = first + per_step * (total - 1)
    return wall, cpu * wall / max(run.elapsed, 1e-9)


def measures(
    engine: Any, image: np.ndarray, content: np.ndarray, style: np.ndarray, meter: Any
) -> dict[str, float]:
    from neural_style.daemon.engine import quality

    return quality.assess(image, content, style, meter).to_dict()


def bench(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine import StyleTransfer, images, quality
    from neural_style.daemon.engine.bench import at_size, baseline

    engine = StyleTransfer.load(args.weights)
    meter = quality.TextureMeter(engine._conv_weights) if engine._conv_weights else None
    configs = [json.loads(text) for text in args.variants]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    base_args = argparse.Namespace(
        baseline_steps=args.baseline_steps, cache=args.cache, json=True, pictures=None
    )
    for pair in args.pairs.split(","):
        content_name, style_name = pair.split(":")
        content_path = find_image(content_name, "content")
        style_path = find_image(style_name, "styles")
        key = pair_key(content_path, style_path)
        content = images.to_float(at_size(images.load_image(content_path), args.size))
        style_raw = images.load_image(style_path)
        style = images.split_alpha(images.to_float(style_raw))[0]
        height, width = content.shape[:2]
        unit_w, unit_h = images.fit_long_side(width, height, UNIT_SIDE)
        work_cost = width * height / (unit_w * unit_h)
        t0 = time.perf_counter()
        base = baseline(engine, content, style_raw, args.size, base_args)
        target = float(base["loss"])
        tutorial = {
            "pair": key,
            "size": args.size,
            "name": "tutorial",
            "params": {"iterations": args.baseline_steps, "precision": "fp32"},
            "target_loss": target,
            "reached": True,
            "evals_512": round(args.baseline_steps * work_cost, 2),
            "evals_work": args.baseline_steps,
            "total_evals_512": round(args.baseline_steps * work_cost, 2),
            "final_loss": target,
            "vs_tutorial": 0.0,
            "time_s": round(float(base["time_s"]), 1),
            "cached": bool(base["cached"]),
            "curve": base["curve"],
            "quality": measures(engine, base["image"], content, style, meter),
        }
        print(
            f"{key}: tutorial {args.baseline_steps} steps at {args.size} px: {target:.5g} "
            f"({'cached' if base['cached'] else f'{time.perf_counter() - t0:.0f} s'})",
            file=sys.stderr,
            flush=True,
        )
        if args.time_steps:
            wall, cpu = tutorial_seconds(
                engine, content, style_raw, args.size, args.time_steps, args.baseline_steps
            )
            tutorial["time_s"], tutorial["cpu_s"] = round(wall, 1), round(cpu, 1)
            tutorial["time_from_steps"] = args.time_steps
            tutorial["wall_ratio"] = tutorial["cpu_ratio"] = 1.0
        _emit(out, tutorial, rows)
        _picture(args, key, "tutorial", base["image"])
        for cfg in configs:
            if args.only and cfg["name"] not in args.only.split(","):
                continue
            row, image = run_variant(
                engine, content, style, cfg, target, args.size, args.check_every, args.progress
            )
            row = {"pair": key, "size": args.size, **row}
            if args.time_steps:  # the tutorial's time in this run: a ratio means something
                row["wall_ratio"] = round(row["time_s"] / max(tutorial["time_s"], 0.1), 4)
                row["cpu_ratio"] = round(row["cpu_s"] / max(tutorial["cpu_s"], 0.1), 4)
            row["quality"] = measures(engine, image, content, style, meter)
            _emit(out, row, rows)
            _picture(args, key, row["name"], image)
            print(_line(row), file=sys.stderr, flush=True)
    print(table(rows))
    return 0


def _emit(out: Path, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    rows.append(row)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _picture(args: argparse.Namespace, pair: str, name: str, image: np.ndarray) -> None:
    if args.pictures is None:
        return
    from neural_style.daemon.engine import images

    folder = Path(args.pictures) / pair
    folder.mkdir(parents=True, exist_ok=True)
    pixels = images.from_float(np.asarray(image, np.float32), np.dtype(np.uint8))
    images.save_image(pixels, folder / f"{name}.png")


def _line(row: dict[str, Any]) -> str:
    evals = "not reached" if row["evals_512"] is None else f"{row['evals_512']:7.1f}"
    q = row.get("quality", {})
    ratio = row.get("wall_ratio")
    return (
        f"{row['pair']:<28} {row['name']:<24} {evals:>11} {row['total_evals_512']:8.1f} "
        f"{row['final_loss']:10.4g} {row['vs_tutorial']:+7.1%} "
        f"{'-' if ratio is None else f'{ratio:.3f}':>6} "
        + " ".join(f"{q.get(k, float('nan')):5.2f}" for k in MEASURES)
    )


def table(rows: list[dict[str, Any]]) -> str:
    """The printed table: one line per run, the tutorial first in each pair."""
    head = (
        f"{'pair':<28} {'run':<24} {'evals_512':>11} {'spent':>8} {'fp32 loss':>10} "
        f"{'vs tut':>7} {'time':>6} struc textu color noise"
    )
    return "\n".join([head, *(_line(r) for r in rows)])


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an ``--out`` file; a later row of the same pair, size and name wins."""
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[(row["pair"], row["size"], row["name"])] = row
    return list(rows.values())


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (docs/performance.md)."""
    lines = [
        "| pair | run | 512 px-equivalent evaluations to the tutorial's loss | spent | "
        "fp32 loss | vs tutorial | time vs tutorial | structure | texture | colour | noise |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        q = r.get("quality", {})
        evals = "not reached" if r["evals_512"] is None else f"{r['evals_512']:.1f}"
        stop = " (stop)" if r.get("stop_at_target") else ""
        ratio = "–" if r.get("wall_ratio") is None else f"{r['wall_ratio']:.3f}"
        lines.append(
            f"| {r['pair']} | {r['name']}{stop} | {evals} | {r['total_evals_512']:.1f} | "
            f"{r['final_loss']:.4g} | {r['vs_tutorial']:+.1%} | "
            f"{ratio} | " + " | ".join(f"{q.get(k, float('nan')):.2f}" for k in MEASURES) + " |"
        )
    return "\n".join(lines)


def contact_sheet(args: argparse.Namespace) -> int:
    """Rows = pairs; cells = content, style, tutorial, then the named runs, labelled."""
    from PIL import Image, ImageDraw

    rows = read_rows(Path(args.out))
    names = ["tutorial", *(args.only.split(",") if args.only else [])]
    if not args.only:
        names += sorted({r["name"] for r in rows} - {"tutorial"})
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    cell, label = args.cell, 30
    columns = 2 + len(names)
    sheet = Image.new("RGB", (columns * cell, 24 + len(pairs) * (cell + label)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), args.title, fill="black")
    for r, pair in enumerate(pairs):
        top = 24 + r * (cell + label)
        content_name, style_name = pair.split("+")
        cells: list[tuple[Path, str, str] | None] = [
            (find_image(content_name, "content"), content_name, ""),
            (find_image(style_name, "styles"), style_name, ""),
        ]
        by_name = {row["name"]: row for row in rows if row["pair"] == pair}
        for name in names:
            row = by_name.get(name)
            if row is None:  # not run on this pair: an empty cell keeps the columns
                cells.append(None)
                continue
            evals = "not reached" if row["evals_512"] is None else f"{row['evals_512']:.0f} ev"
            q = row.get("quality", {})
            cells.append(
                (
                    Path(args.pictures) / pair / f"{name}.png",
                    f"{name}: {evals}, {row['final_loss'] / 1e6:.2f}M",
                    f"s {q.get('structure', 0):.2f} t {q.get('texture', 0):.2f} "
                    f"c {q.get('color', 0):.2f} n {q.get('noise', 0):.2f}",
                )
            )
        for c, entry in enumerate(cells):
            if entry is None:
                continue
            path, text, text2 = entry
            im = Image.open(path).convert("RGB")
            scale = min(cell / im.width, cell / im.height)  # up or down: equal cells
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            left = c * cell
            sheet.paste(im, (left + (cell - im.width) // 2, top))
            draw.text((left + 3, top + cell + 2), text, fill="black")
            draw.text((left + 3, top + cell + 15), text2, fill="black")
    sheet.save(args.sheet)
    print(args.sheet)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--weights", help="VGG-19 weights (the trained stand-in for pictures)")
    ap.add_argument("--size", type=int, default=256, help="working long side (default 256)")
    ap.add_argument(
        "--pairs",
        default="tubingen:starry_night,chelsea:the_scream,astronaut:great_wave",
        help="content:style names or paths, comma-separated",
    )
    ap.add_argument("--baseline-steps", type=int, default=1000)
    ap.add_argument("--cache", type=Path, default=None, help="the tutorial runs' cache folder")
    ap.add_argument("--out", required=True, help="JSONL file the rows are appended to")
    ap.add_argument("--pictures", default=None, help="folder for every result's PNG")
    ap.add_argument("--check-every", type=int, default=5, help="see style_norm above")
    ap.add_argument(
        "--time-steps",
        type=int,
        default=30,
        help="time this many tutorial steps in this run for the time ratios (0: no ratios)",
    )
    ap.add_argument("--progress", type=int, default=0, help="print every N-th step's loss")
    ap.add_argument("--only", default="", help="run (or draw) only these variant names")
    ap.add_argument("--sheet", default=None, help="draw a contact sheet PNG from --out")
    ap.add_argument("--markdown", action="store_true", help="print --out as a Markdown table")
    ap.add_argument("--title", default="", help="the contact sheet's title line")
    ap.add_argument("--cell", type=int, default=256, help="contact sheet cell size")
    ap.add_argument("variants", nargs="*", help="JSON objects: name, StyleParams fields, stop")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(read_rows(Path(args.out))))
        return 0
    if args.sheet:
        return contact_sheet(args)
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
