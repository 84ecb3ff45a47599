"""The code base stays ruff-clean (lint is part of the test command, so CI enforces it)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: install the test extra (./install.sh --test)")
    proc = subprocess.run(
        [ruff, "check", "--no-cache", str(REPO)], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean() -> None:
    """One formatting (ruff format, pyproject's settings); `# fmt: skip` marks the few
    tables laid out by hand."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    proc = subprocess.run(
        [ruff, "format", "--check", "--no-cache", str(REPO)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean(tmp_path: Path) -> None:
    """mypy over daemon/, shared/ and plugin/ (config: pyproject.toml [tool.mypy]).

    The folders are installed as neural_style.daemon/.shared/.plugin, which mypy cannot see
    through the editable install's import hook; a tree of symlinks gives it that layout.
    """
    mypy = shutil.which("mypy") or str(Path(sys.executable).with_name("mypy"))
    if not Path(mypy).exists():
        pytest.fail("mypy is not installed: install the test extra (./install.sh --test)")
    root = tmp_path / "src"
    (root / "neural_style").mkdir(parents=True)
    for name in ("daemon", "shared", "plugin"):
        (root / "neural_style" / name).symlink_to(REPO / name, target_is_directory=True)
    proc = subprocess.run(
        [mypy, "--config-file", str(REPO / "pyproject.toml"), "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), "-p", "neural_style"],
        capture_output=True, text=True, cwd=root, env={**os.environ, "MYPYPATH": str(root)},
        timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_class_in_daemon_or_shared_is_over_250_lines() -> None:
    """Classes small enough to read (issue 14)."""
    known: set[tuple[str, str]] = set()
    long = []
    for path in sorted([*REPO.glob("daemon/**/*.py"), *REPO.glob("shared/**/*.py")]):
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and (rel, node.name) not in known:
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > 250:
                    long.append(f"{rel}: {node.name} has {size} lines")
    assert not long, "\n".join(long)
