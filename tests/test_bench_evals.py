"""benchmarks/bench_evals.py: the cost it counts and the rows it writes (random weights: a
plumbing test; pictures are judged on the stand-in, docs/performance.md)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "bench_evals", REPO / "benchmarks" / "bench_evals.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_rows_count_512px_equivalent_evaluations(synthetic_weights: Path, tmp_path: Path) -> None:
    bench = _module()
    content = REPO.parent / "shared" / "data" / "small" / "chelsea_64.png"
    style = REPO.parent / "shared" / "data" / "small" / "starry_night_64.png"
    if not content.is_file():
        pytest.skip("shared/data/small is not beside this checkout")
    out = tmp_path / "rows.jsonl"
    variant = {"name": "ladder", "size": 64, "scales": [32, 64], "iterations": 8,
               "optimizer": "lbfgs"}  # fmt: skip
    code = bench.main([
        "--weights", str(synthetic_weights), "--size", "64", "--baseline-steps", "6",
        "--cache", "", "--time-steps", "3", "--pairs", f"{content}:{style}", "--out", str(out),
        "--pictures", str(tmp_path / "pics"), json.dumps(variant),
    ])  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    tutorial, ladder = rows
    # a 64x64 evaluation is (64/512)^2 of a 512x512 one
    assert tutorial["evals_512"] == pytest.approx(6 / 64, abs=0.01)
    assert tutorial["time_from_steps"] == 3 and tutorial["wall_ratio"] == 1.0
    assert ladder["wall_ratio"] == pytest.approx(
        ladder["time_s"] / max(tutorial["time_s"], 0.1), rel=0.01
    )
    # 4 L-BFGS evaluations at 32 px (1/256 each) and 4 at 64 px (1/64 each)
    assert ladder["total_evals_512"] == pytest.approx(4 / 256 + 4 / 64, abs=0.01)
    assert ladder["steps"] == 8 and set(ladder["quality"]) == {
        "structure", "texture", "color", "noise"
    }  # fmt: skip
    if ladder["reached"]:
        assert ladder["evals_512"] <= ladder["total_evals_512"]
        assert ladder["final_loss"] <= ladder["target_loss"] * 1.001
    assert (tmp_path / "pics" / "chelsea_64+starry_night_64" / "ladder.png").is_file()
    table = bench.markdown(bench.read_rows(out))
    assert "| chelsea_64+starry_night_64 | ladder |" in table
