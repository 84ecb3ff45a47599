"""Shared fixtures: one synthetic weights file and one loaded engine per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = Path(__file__).resolve().parent / "data"


def load_png(name: str) -> np.ndarray:
    from neural_style.daemon.images import load_image

    return load_image(DATA / name)


@pytest.fixture(scope="session")
def synthetic_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Keras-layout VGG-19 notop file with seeded random values (the real one can't be
    downloaded on CI machines)."""
    from neural_style.daemon.weights import write_synthetic_weights

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
