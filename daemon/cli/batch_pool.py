"""``neural-style batch`` over a daemon with several workers (a Ray-backed daemon's actors,
its welcome's ``limits.workers``): that many inputs in flight at once, each its own job,
so that every worker stays busy. Inputs run at once only when the per-input hook allows it
(``parallel``): :class:`~.batch.IndependentInputs` any of them; frames mode's
``SequenceFrames`` one frame per run of the sequence (its ``chunk`` cuts the runs, its
``ready`` says which frame may start).
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from neural_style.daemon.cli.batch import BatchBar, Hook, Item, Row, Runner
from neural_style.shared.errors import NeuralStyleError

if TYPE_CHECKING:
    from neural_style.daemon.cli.batch import Batch
    from neural_style.shared.records import Step


def in_flight(runner: Runner, hook: Hook, todo: int) -> int:
    """How many inputs to keep in flight: the daemon's workers when the hook lets inputs
    run at once (as many as it cuts runs for, when it cuts them), else 1."""
    ask = getattr(runner, "workers", None)
    if not getattr(hook, "parallel", False) or ask is None or todo < 2:
        return 1
    try:
        workers = max(1, min(int(ask()), todo))
    except NeuralStyleError:
        return 1  # the first job then says what is wrong
    chunk = getattr(hook, "chunk", None)
    return int(chunk(workers)) if chunk is not None and workers > 1 else workers


class ParallelBar(BatchBar):
    """The batch bar over several files at once: the steps of all of them."""

    def __init__(self, files_total: int, steps_per_file: int, disabled: bool) -> None:
        super().__init__(files_total, steps_per_file, disabled)
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def begin(self, name: str) -> None:
        with self._lock:
            self._running[name] = 0
            self._label_many()

    def step_of(self, name: str, it: Step) -> None:
        with self._lock:
            self._running[name] = min(it.step, self._per_file)
            self._bar.update(self._base + sum(self._running.values()) - self._bar.n)

    def end(self, name: str) -> None:
        with self._lock:
            self._running.pop(name, None)
            self._files_done += 1
            self._base += self._per_file
            self._bar.update(self._base + sum(self._running.values()) - self._bar.n)
            self._label_many()

    def _label_many(self) -> None:
        self._bar.set_description_str(
            f"{self._files_done}/{self._files_total} files, {len(self._running)} running",
            refresh=True,
        )


def run_parallel(
    batch: Batch, runner: Runner, hook: Hook, todo: list[Item], bar: ParallelBar, workers: int
) -> None:
    """Keep ``workers`` inputs in flight (each its own job on the daemon); rows and the
    report follow as they finish. Ctrl-C or a fatal error stops the rest: the jobs in
    flight are cancelled at their next progress message."""
    stop = threading.Event()

    def one(item: Item) -> tuple[Item, Row]:
        def on_step(it: Step) -> None:
            if stop.is_set():
                raise KeyboardInterrupt  # Job.wait cancels the job on the daemon
            bar.step_of(item.input.name, it)

        return item, batch._one(runner, hook, item, on_step)

    remaining = list(todo)
    ready = getattr(hook, "ready", None)

    def next_item(idle: bool) -> Item | None:
        """The first input the hook lets start (any, when nothing runs: never stall)."""
        for i, item in enumerate(remaining):
            if ready is None or idle or ready(item, batch.rows.keys()):
                return remaining.pop(i)
        return None

    pending: set[Future[tuple[Item, Row]]] = set()
    with ThreadPoolExecutor(workers, thread_name_prefix="batch") as pool:
        try:
            while True:
                while len(pending) < workers and (item := next_item(not pending)) is not None:
                    bar.begin(item.input.name)
                    pending.add(pool.submit(one, item))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item, row = future.result()
                    batch.rows[item] = row
                    bar.end(item.input.name)
                    batch._write_report()
        except BaseException:
            stop.set()
            raise
