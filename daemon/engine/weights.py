"""Finding, checking, fetching and (for tests) synthesising the VGG-19 weights file.

The product uses Keras' standard ImageNet "notop" file. Resolution order: an explicit path
(``--weights``) -> ``$NEURAL_STYLE_WEIGHTS`` -> Keras' cache (``~/.keras/models/`` or
``$KERAS_HOME/models``). The file is identified by Keras' published MD5; any other file with
the right layout loads too but is reported as *synthetic*: its results are not art.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neural_style.daemon.engine.vgg import VGG19_CHANNELS, VGG19_LAYERS, ConvWeights
from neural_style.shared.errors import ErrorCode, NeuralStyleError

WEIGHTS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + WEIGHTS_FILENAME
)
#: Keras' published checksum of the file (keras/src/applications/vgg19.py).
WEIGHTS_MD5 = "253f8cb515780f3b799900260a226db6"
ENV_VAR = "NEURAL_STYLE_WEIGHTS"
FETCH_HINT = (
    "Run `neural-style fetch-weights` to download it (about 80 MB, once), or pass "
    f"--weights PATH / set {ENV_VAR} to a copy of {WEIGHTS_FILENAME}. `neural-style doctor` "
    "checks the whole set-up."
)
SYNTHETIC_WARNING = (
    "WARNING: these VGG-19 weights are not Keras' ImageNet file (checksum mismatch): "
    "treating them as synthetic test weights. The output is a test artefact, not art."
)


@dataclass(frozen=True)
class WeightsInfo:
    """Where the weights came from and whether they are the real ImageNet file."""

    path: str
    sha256: str
    md5: str
    synthetic: bool

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "synthetic": self.synthetic}


def keras_cache_path() -> Path:
    """Where Keras' own downloader keeps the file."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "models" / WEIGHTS_FILENAME


def resolve_weights(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Apply the resolution order; raise WEIGHTS_MISSING naming what was tried."""
    for given, source in (
        (explicit, "given with --weights"),
        (os.environ.get(ENV_VAR), f"named by {ENV_VAR}"),
    ):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise NeuralStyleError(
                    ErrorCode.WEIGHTS_MISSING,
                    f"The VGG-19 weights file {source} does not exist: {path}.",
                    FETCH_HINT,
                )
            return path
    path = keras_cache_path()
    if path.is_file():
        return path
    raise NeuralStyleError(
        ErrorCode.WEIGHTS_MISSING,
        f"No VGG-19 weights found: no --weights option, no {ENV_VAR}, and nothing at {path}.",
        FETCH_HINT,
    )


def file_digests(path: Path) -> tuple[str, str]:
    """(md5, sha256) of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def check_layout(path: Path) -> None:
    """Check the HDF5 layout Keras' legacy loader expects, with a specific error per fault.

    Catches truncated/corrupt files and files of another network before Keras does, so the
    user reads what is wrong instead of a Keras traceback.
    """
    import h5py

    def corrupt(why: str) -> NeuralStyleError:
        return NeuralStyleError(
            ErrorCode.WEIGHTS_MISSING,
            f"The VGG-19 weights file {path} is unusable: {why}. It may be truncated or "
            "corrupt (an interrupted download?); delete it and fetch it again.",
            FETCH_HINT,
        )

    def wrong(why: str) -> NeuralStyleError:
        return NeuralStyleError(
            ErrorCode.WEIGHTS_MISSING,
            f"The file {path} is not Keras' VGG-19 'notop' weights file: {why}.",
            FETCH_HINT,
        )

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise corrupt(f"HDF5 could not open it ({exc})") from None
    with f:
        try:
            if "layer_names" not in f.attrs:
                raise wrong("it has no 'layer_names' attribute (not a Keras weights file)")
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs["layer_names"]]
            for name, channels in VGG19_CHANNELS.items():
                if name not in names or name not in f:
                    raise wrong(f"layer {name} is missing")
                group = f[name]
                wnames = [
                    w.decode() if isinstance(w, bytes) else str(w)
                    for w in group.attrs.get("weight_names", [])
                ]
                if len(wnames) != 2:
                    raise wrong(f"layer {name} has {len(wnames)} weight arrays, expected 2")
                kernel, bias = (group[w] for w in wnames)
                cin = 3 if name == "block1_conv1" else _previous_channels(name)
                if kernel.shape != (3, 3, cin, channels) or bias.shape != (channels,):
                    raise wrong(
                        f"layer {name} has shapes {kernel.shape}/{bias.shape}, expected "
                        f"{(3, 3, cin, channels)}/{(channels,)}"
                    )
                # Touch the data: a truncated file fails here rather than inside Keras.
                _ = kernel[0, 0, 0, :1], bias[:1]
                _ = kernel[-1, -1, -1, -1:]
            with_weights = [n for n in names if len(f[n].attrs.get("weight_names", [])) > 0]
            if len(with_weights) != len(VGG19_CHANNELS):
                raise wrong(
                    f"it has {len(with_weights)} layers with weights, expected "
                    f"{len(VGG19_CHANNELS)} (the file with the classifier is not the 'notop' one)"
                )
        except NeuralStyleError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise corrupt(f"reading it failed ({exc})") from None


def _previous_channels(name: str) -> int:
    convs = [n for n in VGG19_LAYERS if n != "pool"]
    return VGG19_CHANNELS[convs[convs.index(name) - 1]]


def inspect_weights(path: Path) -> WeightsInfo:
    """Check layout and checksum; say whether these are the real ImageNet weights."""
    check_layout(path)
    md5, sha256 = file_digests(path)
    return WeightsInfo(str(path.resolve()), sha256, md5, synthetic=md5 != WEIGHTS_MD5)


def fetch_weights() -> Path:
    """Download the file with Keras' own downloader, verified against Keras' checksum."""
    import keras

    try:
        got = keras.utils.get_file(
            WEIGHTS_FILENAME,
            WEIGHTS_URL,
            cache_subdir="models",
            file_hash=WEIGHTS_MD5,
            cache_dir=os.environ.get("KERAS_HOME") or None,
        )
    except Exception as exc:  # network errors come in many types
        raise NeuralStyleError(
            ErrorCode.WEIGHTS_MISSING,
            f"Downloading the VGG-19 weights from {WEIGHTS_URL} failed: {exc}.",
            "Check the network connection and run `neural-style fetch-weights` again, or "
            f"copy {WEIGHTS_FILENAME} to {keras_cache_path()} by hand.",
        ) from None
    return Path(got)


#: Synthetic kernels: He-normal noise mixed with a per-filter constant (smooth filters,
#: like a trained network's; pure 3x3 noise makes every gradient high-frequency noise and
#: Adam then mostly adds TV). The gain scales every activation (ReLU layers are
#: homogeneous): with it the style term dominates at the start under the default weights,
#: as with the real network, so tests exercise the balance users see. Measured at 64 px,
#: 40 steps, defaults: Adam total loss -73 %, style -94 %; L-BFGS -82 %.
_SMOOTH = 0.7
SYNTHETIC_INPUT_GAIN = 4.0


def write_synthetic_weights(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a file with the exact HDF5 layout of Keras' notop file, filled with seeded
    He-normal random values: for plumbing tests where the real file can't be had (for
    anything about picture quality use the trained stand-in, :mod:`standin`)."""
    rng = np.random.default_rng(seed)
    convs: dict[str, ConvWeights] = {}
    cin = 3
    for name in VGG19_LAYERS:
        if name == "pool":
            continue
        cout = VGG19_CHANNELS[name]
        kernel = rng.standard_normal((3, 3, cin, cout), dtype=np.float32)
        # A per-filter constant over the 3x3 taps (÷3: it adds up coherently over 9 taps)
        # makes the filters smooth, like a trained VGG's, instead of pure noise.
        dc = rng.standard_normal((1, 1, cin, cout), dtype=np.float32) / np.float32(3.0)
        mixed = (_SMOOTH * dc + (1 - _SMOOTH) * kernel) / np.float32(np.hypot(_SMOOTH, 1 - _SMOOTH))
        kernel = mixed.astype(np.float32, copy=False)
        kernel *= np.float32(np.sqrt(2.0 / (9 * cin)))
        if name == "block1_conv1":
            kernel *= np.float32(SYNTHETIC_INPUT_GAIN)
        bias = (0.01 * rng.standard_normal(cout)).astype(np.float32)
        convs[name] = ConvWeights(kernel, bias)
        cin = cout
    return write_keras_layout(path, convs)


def write_keras_layout(path: str | os.PathLike[str], convs: dict[str, ConvWeights]) -> Path:
    """Write convolution weights in the exact HDF5 layout of Keras' notop file, atomically.

    The layout follows the original file: root attributes ``layer_names``, ``backend``,
    ``keras_version``; one group per layer (pools and input too, with empty
    ``weight_names``); conv layers hold ``<name>_W_1:0`` and ``<name>_b_1:0``.
    """
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layer_names: list[str] = ["input_1"]
    block = 1
    for name in VGG19_LAYERS:
        if name == "pool":
            layer_names.append(f"block{block}_pool")
            block += 1
        else:
            layer_names.append(name)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layer_names], dtype="S")
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for name in layer_names:
            group = f.create_group(name)
            if name not in VGG19_CHANNELS:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            wnames = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            group.attrs["weight_names"] = np.array(wnames, dtype="S")
            group.create_dataset(wnames[0].decode(), data=convs[name].kernel)
            group.create_dataset(wnames[1].decode(), data=convs[name].bias)
    os.replace(tmp, path)
    return path
