"""Shared fixtures: one synthetic weights file and one loaded engine per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = Path(__file__).resolve().parent / "data"


def load_png(name: str) -> np.ndarray:
    from neural_style.daemon.engine.images import load_image

    return load_image(DATA / name)


@pytest.fixture(scope="session", autouse=True)
def private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Daemons started by the tests (in-process or not) keep their CURVE key pairs in a
    scratch ``XDG_STATE_HOME``, never in the user's own state dir."""
    state = tmp_path_factory.mktemp("state")
    os.environ["XDG_STATE_HOME"] = str(state)
    return state


@pytest.fixture(scope="session")
def synthetic_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras-layout VGG-19 notop file with seeded random values (the real one can't be
    downloaded on CI machines)."""
    from neural_style.daemon.engine.weights import write_synthetic_weights

    return write_synthetic_weights(tmp_path_factory.mktemp("weights") / "vgg19_synth.h5", seed=0)


@pytest.fixture(scope="session")
def engine(synthetic_weights: Path):  # type: ignore[no-untyped-def]
    from neural_style.daemon.engine import StyleTransfer

    return StyleTransfer.load(synthetic_weights)


@pytest.fixture(scope="session")
def chelsea64() -> np.ndarray:
    return load_png("chelsea_64.png")


@pytest.fixture(scope="session")
def starry64() -> np.ndarray:
    return load_png("starry_night_64.png")


#: The workplace's reference photos and paintings (beside the repository, read-only).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def standin_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained stand-in (HED's VGG-16 in VGG-19's layout, calibrated): the only
    weights here on which picture quality can be judged. Built once per session (~30 s)."""
    from neural_style.daemon.engine.standin import build_trained_standin, find_hed_weights

    photos = SHARED_DATA / "content"
    if not photos.is_dir():
        pytest.skip(f"the calibration photos are not there: {photos}")
    try:
        find_hed_weights()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    path, _ = build_trained_standin(tmp_path_factory.mktemp("standin") / "standin.h5", photos)
    return path


@pytest.fixture(scope="session")
def standin_engine(standin_weights: Path):  # type: ignore[no-untyped-def]
    from neural_style.daemon.engine import StyleTransfer

    return StyleTransfer.load(standin_weights)
