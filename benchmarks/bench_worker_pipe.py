"""What handing a job to the worker process costs: a job's images through the daemon's
worker pipe (daemon/service/worker_pipe.py) to a child process and the result back, at
512 px and 4096 px, against the time of a 512 px job.

    .venv/bin/python benchmarks/bench_worker_pipe.py [--json out.json]

The child is a real second process reading with ``recv_into`` (as the worker does); the
figure per size is the median of several round trips of content + style out and a result
of the content's size back, beside the time of one in-process copy of the same bytes
(``ndarray.copy``: the floor for "one copy"; on a virtual machine it is dominated by
first-touch page faults).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import statistics
import time

import numpy as np
from machine import cpu_name

from neural_style.daemon.service.worker_pipe import Pipe

#: A 512 px `fast` job on a 2-core CPU takes about 42-63 s (docs/performance.md); the
#: pipe's share is reported against the shortest, 42 s, and against one 512 px step (~1 s).
JOB_512_S = 42.0
STEP_512_S = 1.0


def _echo(fd: int) -> None:
    pipe = Pipe(socket.socket(fileno=fd))
    while True:
        header, arrays = pipe.recv()
        if header.get("op") == "stop":
            return
        pipe.send({"op": "result"}, [arrays[0]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    ours, theirs = socket.socketpair()
    child = multiprocessing.get_context("fork").Process(target=_echo, args=(theirs.fileno(),))
    child.start()
    theirs.close()
    pipe = Pipe(ours)
    rows = []
    cases = [
        ("512 px RGB u8", (384, 512, 3), np.uint8),
        ("512 px RGBA f32", (384, 512, 4), np.float32),
        ("4096 px RGB u8", (3072, 4096, 3), np.uint8),
        ("4096 px RGBA f32", (3072, 4096, 4), np.float32),
    ]
    for name, shape, dtype in cases:
        content = np.random.default_rng(0).random(shape).astype(dtype)
        style = np.random.default_rng(1).random((512, 512, 3)).astype(dtype)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            pipe.send({"op": "job"}, [content, style])
            pipe.recv()
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        copies = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            moved = [content.copy(), style.copy(), content.copy()]
            copies.append(time.perf_counter() - t0)
            del moved
        one_copy = statistics.median(copies)
        mib = (2 * content.nbytes + style.nbytes) / 2**20
        rows.append({"case": name, "mib_moved": round(mib, 1), "round_trip_s": round(median, 4),
                     "one_copy_s": round(one_copy, 4),
                     "ratio_to_one_copy": round(median / one_copy, 2),
                     "share_of_512px_job": round(median / JOB_512_S, 5),
                     "share_of_512px_step": round(median / STEP_512_S, 4)})  # fmt: skip
    pipe.send({"op": "stop"})
    child.join()
    report = {"cpu": cpu_name(), "cores": multiprocessing.cpu_count(), "rows": rows}
    print(f"worker pipe round trips on {report['cpu']} ({report['cores']} cores), median of "
          f"{args.repeats}:")  # fmt: skip
    for r in rows:
        ms = r["round_trip_s"] * 1000
        share = 100 * r["share_of_512px_job"]
        print(f"  {r['case']:18s} {r['mib_moved']:7.1f} MiB  {ms:8.1f} ms  = {share:.3f} % "
              f"of a {JOB_512_S:.0f} s 512 px job; {r['ratio_to_one_copy']:.2f}x one "
              "in-process copy of the same bytes")  # fmt: skip
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
