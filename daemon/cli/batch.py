"""``neural-style batch``: one look over many pictures, resumable, with a report.

Each input ``IN`` becomes ``OUT_DIR/<IN's stem>.png``. The model is loaded once: a daemon
that answers keeps it resident (and its style Gram cache serves every input after the
first); without one, this process loads it once and its engine's cache does the same.

Resumable: outputs are written through a temporary file in ``OUT_DIR`` and a rename, so a
file under its final name is complete; a re-run skips those that exist and decode. A bad
input (unreadable, corrupt, too large, too thin for VGG-19) is a ``failed`` row and the
rest go on. Exit status: 0 when every input is ``ok`` or ``skipped``, 1 when any failed,
2 for a usage error or when the batch cannot run at all (no weights, daemon gone).

Per-input work goes through a :class:`Hook` (``before`` gives the job's extras, ``after``
sees the result), so a sequence mode can start frame *t* from the stylized frame *t-1*.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from neural_style.daemon.cli import job_options, reports
from neural_style.shared import files
from neural_style.shared.errors import ErrorCode, NeuralStyleError

if TYPE_CHECKING:
    import numpy as np

    from neural_style.daemon.engine import StyleTransfer
    from neural_style.daemon.engine.params import StyleParams, StylizeResult
    from neural_style.shared.records import Step

OUTPUT_SUFFIX = ".png"
OK, SKIPPED, FAILED = "ok", "skipped", "failed"
#: Errors that say the batch cannot go on at all (not this input's fault): it stops there.
FATAL_CODES = frozenset(
    {
        ErrorCode.DAEMON_UNAVAILABLE,
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.VERSION_MISMATCH,
        ErrorCode.WEIGHTS_MISSING,
    }
)
GLOB_CHARS = frozenset("*?[")


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Item:
    """One input picture and the file its result goes to."""

    input: Path
    output: Path


@dataclass
class Row:
    """One line of the ``--report``: what happened to one input."""

    input: str
    output: str
    status: str
    error: str = ""
    seconds: float = 0.0
    """Wall time for this input: load, job, save."""
    steps: int = 0
    job_s: float = 0.0
    """The job's own time (targets and steps), as the engine or daemon measured it."""
    style_cache_hit: bool = False
    frame: dict[str, Any] = field(default_factory=dict)  # frames mode: continued, cut, ...


def expand_inputs(args: Sequence[str], folder_suffixes: frozenset[str]) -> list[Path]:
    """Files, folders (their image files, by suffix, sorted; hidden ones left out) and glob
    patterns (sorted), in the order given, each file once.

    A path that does not exist or a pattern that matches nothing is a usage error: the
    command line is wrong, and nothing has started yet.
    """
    from neural_style.daemon.engine.images import bad

    found: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found += sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in folder_suffixes
            )
        elif path.exists():
            found.append(path)
        elif GLOB_CHARS & set(arg):
            matches = sorted(Path(m) for m in glob.glob(arg) if Path(m).is_file())
            if not matches:
                raise bad(f"No file matches {arg!r}.")
            found += matches
        else:
            raise bad(f"No such input file or folder: {arg}.")
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def plan(inputs: Sequence[Path], out_dir: Path) -> list[Item]:
    """Each input's output; two inputs with the same stem, or an output that would replace
    an input, are a usage error naming them (no silent renaming: a re-run must find the
    same output for the same input)."""
    from neural_style.daemon.engine.images import bad

    by_output: dict[Path, list[Path]] = {}
    for p in inputs:
        by_output.setdefault(out_dir / (p.stem + OUTPUT_SUFFIX), []).append(p)
    clashes = {out: ins for out, ins in by_output.items() if len(ins) > 1}
    if clashes:
        lines = "; ".join(
            f"{out.name} <- {', '.join(map(str, ins))}" for out, ins in clashes.items()
        )
        raise bad(
            f"Inputs with the same name would write the same output: {lines}.",
            "Rename them, or run them in separate batches with different -o folders.",
        )
    resolved = {p.resolve() for p in inputs}
    for out, (p,) in by_output.items():
        if out.resolve() in resolved:
            raise bad(f"The output {out} would overwrite the input {p}.", "Use another -o folder.")
    return [Item(ins[0], out) for out, ins in by_output.items()]


def is_complete(path: Path) -> bool:
    """True when ``path`` is there and decodes as an image (PIL's checksum pass)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, ValueError, SyntaxError):
        return False
    return True


def remove_partials(output: Path) -> None:
    """Remove what a killed run left of ``output``: the temporary files
    :func:`~neural_style.shared.files.atomic_path` names ``.<name>.XXXXXXXX.png``."""
    for stale in output.parent.glob(glob.escape(f".{output.name}.") + "?" * 8 + OUTPUT_SUFFIX):
        stale.unlink(missing_ok=True)


def save_atomic(image: np.ndarray, output: Path) -> None:
    """PNG through a temporary file beside ``output`` and a rename."""
    from neural_style.daemon.engine import images

    pil = images.array_to_pil(images.as_hwc(image, "result"), OUTPUT_SUFFIX)
    with files.atomic_path(output, suffix=OUTPUT_SUFFIX) as tmp:
        pil.save(tmp, format="PNG")


# --------------------------------------------------------------------------- per-input hook
@dataclass
class Extras:
    """What a hook adds to one input's job. ``init``: the starting image at the content's
    size (sent to a daemon as ``submit.init``). ``previous``, ``temporal_weight``: frames
    mode (:mod:`neural_style.daemon.frames.temporal`; None: the default weight)."""

    init: np.ndarray | None = None
    previous: tuple[np.ndarray, np.ndarray] | None = None
    temporal_weight: float | None = None


class Hook(Protocol):
    """Per-input extension point: called around each input's job, in input order."""

    def before(self, item: Item, content: np.ndarray) -> Extras: ...

    def after(self, item: Item, result: StylizeResult) -> None: ...


class IndependentInputs:
    """Every input on its own: no init image, nothing carried over."""

    #: Inputs may run at once (a daemon with several workers): nothing links them.
    parallel = True

    def before(self, item: Item, content: np.ndarray) -> Extras:
        return Extras()

    def after(self, item: Item, result: StylizeResult) -> None:
        return None


# --------------------------------------------------------------------------- where it runs
OnStep = Callable[["Step"], None]


class Runner(Protocol):
    """Runs one job; ``meta`` goes into the report (mode, weights, device)."""

    meta: dict[str, Any]

    def run(
        self, content: np.ndarray, styles: list[np.ndarray], params: StyleParams,
        on_step: OnStep, extras: Extras,
    ) -> StylizeResult: ...  # fmt: skip


@dataclass
class LocalRunner:
    """This process, one engine for all inputs (its style cache keeps the Grams)."""

    engine: StyleTransfer
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.meta = {
            "mode": "local",
            "weights": self.engine.weights.to_dict(),
            "device": self.engine.device,
        }

    def run(
        self, content: np.ndarray, styles: list[np.ndarray], params: StyleParams,
        on_step: OnStep, extras: Extras,
    ) -> StylizeResult:  # fmt: skip
        if extras.previous is not None:  # frames mode
            from neural_style.daemon.frames import batch_mode

            return batch_mode.run_local(self.engine, content, styles, params, on_step, extras)
        return self.engine.stylize(content, styles, params, on_step, init=extras.init)


@dataclass
class DaemonRunner:
    """A daemon: resident model, its style Gram cache shared by every input."""

    endpoint: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.meta = {"mode": "daemon", "endpoint": self.endpoint}

    def workers(self) -> int:
        """Jobs the daemon runs at once (its welcome's ``limits.workers``: a Ray-backed
        daemon's actors; 1 for a daemon without the field)."""
        from neural_style.shared.client import Client

        with Client(self.endpoint, timeout=10.0) as client:
            limits = client.hello().get("limits") or {}
        value = limits.get("workers", 1)
        return max(1, int(value)) if isinstance(value, int) else 1

    def run(
        self, content: np.ndarray, styles: list[np.ndarray], params: StyleParams,
        on_step: OnStep, extras: Extras,
    ) -> StylizeResult:  # fmt: skip
        from neural_style.daemon.cli import remote

        result = remote.stylize_remote(
            self.endpoint, content, styles, params, on_step, init=extras.init,
            previous=extras.previous, temporal_weight=extras.temporal_weight,
        )  # fmt: skip
        if result.daemon is not None:
            self.meta.update(weights=result.daemon.weights, device=result.daemon.device)
        return result


def make_runner(args: argparse.Namespace) -> Runner:
    """A daemon when one answers (or the one ``--daemon`` names), else in-process:
    stylize's own choice (:func:`neural_style.daemon.cli.remote.daemon_endpoint`)."""
    from neural_style.daemon.cli import remote

    endpoint = remote.daemon_endpoint(args)
    if endpoint is not None:
        return DaemonRunner(endpoint)
    from neural_style.daemon.engine import StyleTransfer

    return LocalRunner(StyleTransfer.load(args.weights))


# --------------------------------------------------------------------------- progress
class BatchBar:
    """One tqdm bar on stderr over every step of every input still to do; its label says
    files done and the current file's step, tqdm adds the ETA."""

    def __init__(self, files_total: int, steps_per_file: int, disabled: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=files_total * steps_per_file,
            disable=disabled,
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{desc} |{bar}| [{elapsed}<{remaining}]",
        )
        self._files_total, self._per_file = files_total, steps_per_file
        self._files_done = 0
        self._base = 0  # bar position at the start of the current file
        self._name = ""

    def _label(self, step: int, refresh: bool) -> None:
        self._bar.set_description_str(
            f"{self._files_done}/{self._files_total} files, {self._name} step "
            f"{step}/{self._per_file}",
            refresh=refresh,
        )

    def start(self, name: str) -> None:
        self._name = name
        self._label(0, refresh=True)

    def step(self, it: Step) -> None:
        self._label(it.step, refresh=False)
        self._bar.update(self._base + min(it.step, self._per_file) - self._bar.n)

    def finish_file(self) -> None:
        self._files_done += 1
        self._base += self._per_file
        self._label(self._per_file, refresh=False)
        self._bar.update(self._base - self._bar.n)

    def close(self) -> None:
        self._bar.close()


# --------------------------------------------------------------------------- the command
def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "batch",
        help="stylize many image files (files, folders, globs) after the same style(s)",
        description="Stylize each INPUT after STYLE into OUT_DIR/<input name>.png, loading "
        "the model once (a running daemon when one answers, else this process). A re-run "
        "skips outputs already written; bad inputs are reported and the rest go on. Exit "
        "status 0: all ok or skipped; 1: some failed; 2: usage error. " + job_options.DEFAULTS_NOTE,
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder or glob")
    p.add_argument(
        "--style", dest="styles", action="append", required=True, metavar="STYLE",
        help="style image file (repeat to blend several)",
    )  # fmt: skip
    p.add_argument("-o", "--output-dir", required=True, metavar="OUT_DIR", help="output folder")
    job_options.add_job_options(p)
    p.add_argument("--report", metavar="FILE.json", help="write a JSON row per input here")
    from neural_style.daemon.frames import batch_mode

    batch_mode.add_options(p)
    p.set_defaults(func=run, report=None, frames=False, temporal_weight=None, independent=False)


def run(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine import images

    params = job_options.params_from_args(args)
    init_path = job_options.init_image_path(args)
    if init_path is not None:
        raise images.bad(
            f"batch takes --init as a mode only, not the image {init_path}.",
            "Refine single pictures with `neural-style stylize --init IMAGE`.",
        )
    styles = [images.load_image(s, "style image") for s in args.styles]
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images.check_writable(out_dir / ("probe" + OUTPUT_SUFFIX))
    report_path = reports.check_report_path(Path(args.report)) if args.report else None
    inputs = expand_inputs(args.inputs, frozenset(images.WRITABLE_SUFFIXES))
    from neural_style.daemon.frames import batch_mode

    inputs = batch_mode.sequence_order(args, inputs)
    items = plan(inputs, out_dir)
    hook: Hook = batch_mode.hook_for(args, items) or IndependentInputs()
    batch = Batch(items, styles, params, report_path, quiet=args.quiet)
    return batch.run(lambda: make_runner(args), hook)


class Batch:
    """Runs a plan, keeps the rows and rewrites the report after each input (so a killed
    run's report says how far it got)."""

    def __init__(
        self,
        items: list[Item],
        styles: list[np.ndarray],
        params: StyleParams,
        report_path: Path | None,
        quiet: bool = False,
    ) -> None:
        self.items, self.styles, self.params = items, styles, params
        self.report_path, self.quiet = report_path, quiet
        self.rows: dict[Item, Row] = {}
        """Finished inputs' rows; the report lists them in input order."""
        self.meta: dict[str, Any] = {}

    def run(self, make: Callable[[], Runner], hook: Hook) -> int:
        todo: list[Item] = []
        for item in self.items:
            remove_partials(item.output)
            if is_complete(item.output):
                self.rows[item] = Row(str(item.input), str(item.output), SKIPPED)
            else:
                todo.append(item)
        self._say(
            f"{len(self.items)} inputs: {len(self.items) - len(todo)} done, {len(todo)} to do"
        )
        if todo:
            runner = make()
            self.meta = runner.meta
            if runner.meta.get("weights", {}).get("synthetic"):
                print(reports.synthetic_warning(), file=sys.stderr)
            from neural_style.daemon.cli import batch_pool

            workers = batch_pool.in_flight(runner, hook, len(todo))
            kind = batch_pool.ParallelBar if workers > 1 else BatchBar
            bar = kind(len(todo), self.params.iterations, disabled=self.quiet)
            try:
                if workers > 1:
                    assert isinstance(bar, batch_pool.ParallelBar)
                    batch_pool.run_parallel(self, runner, hook, todo, bar, workers)
                for item in todo if workers == 1 else ():
                    bar.start(item.input.name)
                    self.rows[item] = self._one(runner, hook, item, bar.step)
                    bar.finish_file()
                    self._write_report()
            except KeyboardInterrupt:
                bar.close()
                self._write_report()
                print("neural-style: interrupted; the outputs written are kept, a re-run "
                      "finishes the rest.", file=sys.stderr)  # fmt: skip
                return 130
            except NeuralStyleError:
                bar.close()
                self._write_report()
                raise
            bar.close()
        self._write_report()
        failed = [r for r in self._ordered() if r.status == FAILED]
        for r in failed:
            print(f"neural-style: failed: {r.input}: {r.error}", file=sys.stderr)
        self._say(", ".join(f"{n} {s}" for s, n in self._summary().items()))
        return 1 if failed else 0

    def _ordered(self) -> list[Row]:
        return [self.rows[item] for item in self.items if item in self.rows]

    def _summary(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.rows.values()) for s in (OK, SKIPPED, FAILED)}

    def _one(self, runner: Runner, hook: Hook, item: Item, on_step: OnStep) -> Row:
        """One input: a failed Row for a bad input; a fatal error (the daemon went away)
        propagates and stops the batch."""
        from neural_style.daemon.engine import images
        from neural_style.daemon.engine.params import check_work_sizes

        start = time.perf_counter()
        row = Row(str(item.input), str(item.output), FAILED)
        try:
            content = images.load_image(item.input, "input image")
            check_work_sizes(images.as_hwc(content), self.styles, self.params)
            result = runner.run(
                content, self.styles, self.params, on_step, hook.before(item, content)
            )
            save_atomic(result.image, item.output)
            hook.after(item, result)
        except NeuralStyleError as exc:
            if exc.code in FATAL_CODES:
                raise
            row.error = exc.message
        except Exception as exc:  # e.g. TensorFlow's own errors in-process: this input only
            row.error = f"{type(exc).__name__}: {exc}"
        else:
            row.status, row.steps = OK, len(result.iterates)
            row.job_s, row.style_cache_hit = round(result.elapsed, 3), result.style_cache_hit
            row.frame = dict(result.frame)
        row.seconds = round(time.perf_counter() - start, 3)
        return row

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(f"neural-style batch: {text}", file=sys.stderr)

    def _write_report(self) -> None:
        if self.report_path is None:
            return
        report = {
            **self.meta,
            "params": self.params.to_dict(),
            "summary": self._summary(),
            "rows": [asdict(r) for r in self._ordered()],
        }
        reports.write_json_atomic(report, self.report_path)


__all__ = ["Batch", "Extras", "Hook", "Item", "Row", "add_commands", "run"]
