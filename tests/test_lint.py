"""The code base stays ruff-clean (lint is part of the test command, so CI enforces it)."""

from __future__ import annotations

import ast
import os
import re
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
    through the editable install's import hook; a tree of symlinks gives it that layout. The
    plug-in's modules import each other by their top-level names, as in GIMP's plug-in folder:
    a second tree laid out as install-plugin lays it out (nsg_*.py, nsg_shared/) resolves
    them, with no per-module overrides.
    """
    mypy = shutil.which("mypy") or str(Path(sys.executable).with_name("mypy"))
    if not Path(mypy).exists():
        pytest.fail("mypy is not installed: install the test extra (./install.sh --test)")
    root = tmp_path / "src"
    (root / "neural_style").mkdir(parents=True)
    for name in ("daemon", "shared", "plugin"):
        (root / "neural_style" / name).symlink_to(REPO / name, target_is_directory=True)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for helper in (REPO / "plugin").glob("nsg_*.py"):
        (bundle / helper.name).symlink_to(helper)
    (bundle / "nsg_shared").symlink_to(REPO / "shared", target_is_directory=True)
    proc = subprocess.run(
        [mypy, "--config-file", str(REPO / "pyproject.toml"), "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), "-p", "neural_style"],
        capture_output=True, text=True, cwd=root,
        env={**os.environ, "MYPYPATH": os.pathsep.join([str(root), str(bundle)])}, timeout=900,
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


# --- project text: no history words, links that resolve, a README a newcomer can read ---

#: Words that tell the project's history instead of stating a fact with its measurement.
#: Built from pieces so that this file does not match itself; CHANGELOG.md is where history
#: belongs. "re-run" as the product's behaviour ("a re-run skips finished outputs") is fine.
_SESSION = "ses" + "sion"
HISTORY_WORDS = re.compile(
    "|".join(
        (
            rf"\b{_SESSION}s?[ _-]?[0-9]",
            r"\bthis " + "turn\\b",
            r"\b" + "today" + r"\b",
            rf"\b(?:earlier|last|previous) {_SESSION}\b",
        )
    ),
    re.IGNORECASE,
)
#: File names say what a file holds: the history words, and "rerun".
HISTORY_NAMES = re.compile(HISTORY_WORDS.pattern + "|" + "re" + "run", re.IGNORECASE)
HISTORY_ALLOWED = {"CHANGELOG.md", "tests/test_lint.py"}


def _tracked_files() -> list[str]:
    proc = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, text=True, cwd=REPO, check=True
    )
    return [name for name in proc.stdout.split("\0") if name]


def _text(path: Path) -> str | None:
    """The file's text, or None for binary files (a NUL byte, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_history_words_in_tracked_text() -> None:
    """Facts are stated with their measurement (machine, command), never as "session N"
    or "today's run": history goes in git log and CHANGELOG.md."""
    found = []
    for name in _tracked_files():
        path = REPO / name
        if name in HISTORY_ALLOWED or not path.is_file():
            continue
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            match = HISTORY_WORDS.search(line)
            if match:
                found.append(f"{name}:{number}: {match.group(0)!r} in {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_no_history_words_in_tracked_file_names() -> None:
    found = [name for name in _tracked_files() if HISTORY_NAMES.search(Path(name).name)]
    assert not found, found


def test_history_patterns_catch_what_they_are_for() -> None:
    """The patterns must fail on the phrases they exist for (else the tests above pass
    vacuously) and leave ordinary words alone."""
    for bad in (
        f"measured in {_SESSION} 12",
        f"the {_SESSION}s 5-7 machine",
        f"{_SESSION}-7's lead",
        "made this " + "turn",
        "today" + "'s rerun",
        f"an earlier {_SESSION}",
        f"the Last {_SESSION}'s CPU",
    ):
        assert HISTORY_WORDS.search(bad), bad
    for fine in ("a re-run skips finished outputs", "prepare_rerun", "the pytest session", "1e4"):
        assert not HISTORY_WORDS.search(fine), fine
    assert HISTORY_NAMES.search("bench-512-" + "re" + "run.png")
    assert HISTORY_NAMES.search(f"lbfgs-{_SESSION}9.jsonl")


#: [text](target) and ![alt](target), optionally with a "title"; <img src="target">.
MD_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)


def _doc_pages() -> list[Path]:
    return [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


def _links(markdown: str) -> list[tuple[int, str]]:
    """(line, target) of every link outside fenced code blocks and inline code."""
    out = []
    fenced = False
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = re.sub(r"`[^`]*`", "", line)
        out += [(number, m.group(1)) for m in MD_LINK.finditer(line)]
        out += [(number, m.group(1)) for m in HTML_SRC.finditer(line)]
    return out


def test_relative_links_in_the_docs_resolve() -> None:
    """Every relative link and image in README.md, CHANGELOG.md and docs/*.md names a file
    that exists (anchors are not checked; web links are not followed)."""
    broken = []
    checked = 0
    for page in _doc_pages():
        assert page.is_file(), f"{page.relative_to(REPO)} is missing"
        for number, target in _links(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
                continue  # http(s), mailto, ... and anchors within the page
            path = target.split("#", 1)[0].split("?", 1)[0]
            checked += 1
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO)}:{number}: {target}")
    assert not broken, "\n".join(broken)
    assert checked >= 20, f"only {checked} relative links found: is the link pattern broken?"


def test_link_pattern_finds_links_and_skips_code() -> None:
    text = (
        "see [a](docs/a.md#x) and ![b (c)](b.png) and [w](https://x.org)\n"
        '<img src="c.png" width="3">\n'
        "`[not](inline.md)`\n```\n[not](fenced.md)\n```\n"
    )
    assert [t for _, t in _links(text)] == ["docs/a.md#x", "b.png", "https://x.org", "c.png"]


#: The two commands README.md promises (a contract: issue 25), exactly as written there.
README_COMMANDS = (
    "./install.sh && .venv/bin/neural-style stylize daemon/samples/chelsea.jpg "
    "daemon/samples/starry_night.jpg -o stylized.png --size 256 --iterations 200",
    "./install.sh --test && .venv/bin/python -m pytest",
)


def test_readme_is_a_short_product_page_with_the_two_commands_first() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 210, f"README.md has {len(lines)} lines (at most 210)"
    first_screen = [line.strip() for line in lines[:40]]
    for command in README_COMMANDS:
        assert command in first_screen, f"not in README.md's first 40 lines: {command}"


#: The product's folders (benchmarks/ and tests/ are exempt from the size rules).
PRODUCT = ("daemon", "shared", "plugin")


def _product_modules() -> list[Path]:
    return sorted(p for name in PRODUCT for p in (REPO / name).rglob("*.py"))


def test_no_module_in_the_product_is_over_500_lines() -> None:
    """A module holds one idea; past 500 lines it holds several (split it by idea)."""
    long = []
    for path in _product_modules():
        size = len(path.read_text(encoding="utf-8").splitlines())
        if size > 500:
            long.append(f"{path.relative_to(REPO)}: {size} lines")
    assert not long, "\n".join(long)


def test_no_class_in_the_plugin_is_over_250_lines() -> None:
    """The plug-in bundle's classes as small as daemon/'s and shared/'s."""
    long = []
    for path in sorted((REPO / "plugin").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > 250:
                    long.append(f"{path.relative_to(REPO)}: {node.name} has {size} lines")
    assert not long, "\n".join(long)


def test_every_product_module_opens_with_a_docstring_saying_its_idea() -> None:
    missing = [
        str(path.relative_to(REPO))
        for path in _product_modules()
        if not (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip()
    ]
    assert not missing, "modules without a docstring: " + ", ".join(missing)


def _modules_loaded_by(package: str) -> set[str]:
    """The top-level module names a fresh interpreter holds after importing ``package``
    and every module in it."""
    probe = (
        f"import importlib, pkgutil, sys; import {package} as p\n"
        "for m in pkgutil.iter_modules(p.__path__):\n"
        "    importlib.import_module(p.__name__ + '.' + m.name)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
        "print('service' if 'neural_style.daemon.service' in sys.modules else '')"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    modules, service = ([*proc.stdout.splitlines(), "", ""])[:2]
    return set(modules.split()) | ({"neural_style.daemon.service"} if service else set())


def test_the_engine_imports_without_zeromq() -> None:
    """The engine is the maths and the model: importing all of it (TensorFlow included)
    pulls in no ZeroMQ, msgpack or the service."""
    loaded = _modules_loaded_by("neural_style.daemon.engine")
    assert "tensorflow" in loaded  # the probe really imported the engine's modules
    unwanted = {"zmq", "msgpack", "neural_style.daemon.service"} & loaded
    assert not unwanted, sorted(unwanted)


def test_shared_and_every_module_in_it_import_without_tensorflow_or_numpy() -> None:
    """shared/ is what the GIMP plug-in bundles: standard library, pyzmq and msgpack."""
    loaded = _modules_loaded_by("neural_style.shared")
    assert "zmq" in loaded  # the probe really imported the client
    unwanted = {"tensorflow", "numpy", "keras"} & loaded
    assert not unwanted, sorted(unwanted)
