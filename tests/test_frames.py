"""Frame tools on synthetic sequences whose true motion is known: DIS flow against the
true flow, the warp convention, Ruder et al.'s reliability mask, scene cuts, the flicker
measure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neural_style.daemon.frames import flow as F
from neural_style.daemon.frames import sequences as S
from neural_style.daemon.frames.flicker import resize_to, sequence_flicker, temporal_error

SIZE = (128, 96)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return S.sample_still("chelsea.jpg")


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return S.sample_still("starry_night.jpg")


def endpoint_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(estimate - truth, axis=-1))


def test_pan_is_exact_crops_and_warp_follows_the_flow_convention(photo: np.ndarray) -> None:
    """Frame t is frame t-1 shifted by the step: warping frame t-1 by the true backward
    flow gives frame t exactly wherever its source lies inside frame t-1."""
    seq = S.pan(photo, SIZE, frames=4, step=(5, 2))
    assert seq.size == SIZE and len(seq.frames) == 4 and seq.flows[0] is None
    for t in range(1, 4):
        flow, unreliable = seq.flows[t], seq.unreliable[t]
        assert flow is not None and unreliable is not None
        warped = F.warp(seq.frames[t - 1], flow)
        assert np.abs(warped - seq.frames[t])[~unreliable].max() < 1e-5
        # what the pan brings in: the right 5 columns and the bottom 2 rows
        assert unreliable[:, -5:].all() and unreliable[-2:, :].all()
        assert not unreliable[:-2, :-5].any()
    # the frames differ (the window moves), so the test above is not vacuous
    assert np.abs(seq.frames[1] - seq.frames[0]).mean() > 0.02


def test_dis_flow_recovers_a_pan_and_masks_the_incoming_strip(photo: np.ndarray) -> None:
    seq = S.pan(photo, SIZE, frames=3, step=(4, 1))
    for t in (1, 2):
        pair = F.frame_pair(seq.frames[t - 1], seq.frames[t])
        truth, unreliable = seq.flows[t], seq.unreliable[t]
        assert truth is not None and unreliable is not None
        err = endpoint_error(pair.backward, truth)
        assert np.median(err[~unreliable]) < 0.2, np.median(err[~unreliable])
        # the forward flow is the opposite motion
        assert np.median(endpoint_error(pair.forward, -truth)[4:-4, 4:-4]) < 0.2
        assert pair.mask[unreliable].mean() < 0.05  # the new strip is never trusted
        assert pair.mask[~unreliable].mean() > 0.95  # the rest is
        assert not pair.cut and pair.photometric < 0.01


def test_dis_flow_recovers_a_zoom(photo: np.ndarray) -> None:
    """Zoom flow grows from 0 at the centre to ~1.8 px at the corners."""
    seq = S.zoom(photo, SIZE, frames=3, factor=1.03)
    truth = seq.flows[1]
    assert truth is not None and np.abs(truth).max() > 1.5
    pair = F.frame_pair(seq.frames[0], seq.frames[1])
    err = endpoint_error(pair.backward, truth)
    assert np.median(err) < 0.3, np.median(err)
    assert pair.reliable > 0.9 and not pair.cut


def test_moving_object_flow_and_disocclusion_mask(photo: np.ndarray, painting: np.ndarray) -> None:
    """Inside the patch the flow is -velocity, the background's 0; the background the
    patch uncovers (no source in frame t-1) is masked; the far background is trusted."""
    velocity = (6, 2)
    seq = S.moving_object(photo, painting, SIZE, frames=4, velocity=velocity)
    t = 2
    truth, uncovered = seq.flows[t], seq.unreliable[t]
    assert truth is not None and uncovered is not None and uncovered.sum() > 100
    pair = F.frame_pair(seq.frames[t - 1], seq.frames[t])
    inside = np.all(truth == (-velocity[0], -velocity[1]), axis=-1)
    core = inside & ~np.roll(~inside, 4, 0) & ~np.roll(~inside, -4, 0)
    core &= ~np.roll(~inside, 4, 1) & ~np.roll(~inside, -4, 1)
    assert np.abs(np.median(pair.backward[core], axis=0) - velocity * np.array(-1)).max() < 0.3
    assert np.abs(np.median(pair.backward[~inside & ~uncovered], axis=0)).max() < 0.1
    assert pair.mask[uncovered].mean() < 0.2, pair.mask[uncovered].mean()
    far = np.ones(SIZE[::-1], bool)
    ys, xs = np.nonzero(inside | uncovered)
    far[max(0, ys.min() - 12) : ys.max() + 12, max(0, xs.min() - 12) : xs.max() + 12] = False
    assert pair.mask[far].mean() > 0.95
    assert not pair.cut


def test_scene_cut_is_detected_where_it_is_and_nowhere_else(
    photo: np.ndarray, painting: np.ndarray
) -> None:
    seq = S.scene_cut(photo, painting, SIZE, frames=6, cut_at=3)
    assert seq.cuts == [3] and seq.flows[3] is None
    pairs = [F.frame_pair(seq.frames[t - 1], seq.frames[t]) for t in range(1, 6)]
    assert [t for t, p in enumerate(pairs, start=1) if p.cut] == [3]
    cut = pairs[2]
    assert cut.reliable < F.CUT_RELIABLE or cut.photometric > F.CUT_PHOTOMETRIC
    assert min(p.reliable for p in pairs if not p.cut) > 0.9


def test_temporal_error_separates_consistent_from_flickering_sequences(
    photo: np.ndarray,
) -> None:
    """A 'stylization' that moves with the scene (a pan over a fixed noisy still) has the
    content's floor of temporal error; one with fresh noise each frame (flicker) has far
    more; the cut pair of a sequence is left out of the means."""
    rng = np.random.default_rng(0)
    big = S.fit_still(photo, SIZE[0] + 20, SIZE[1] + 5)
    noisy = np.clip(big + rng.normal(0, 0.1, big.shape), 0, 1).astype(np.float32)
    clean = S.pan(big, SIZE, frames=5, step=(4, 1))
    consistent = S.pan(noisy, SIZE, frames=5, step=(4, 1))
    flicker = [
        np.clip(f + rng.normal(0, 0.1, f.shape), 0, 1).astype(np.float32) for f in clean.frames
    ]
    steady = sequence_flicker(consistent.frames, clean.frames)
    boiling = sequence_flicker(flicker, clean.frames)
    assert len(steady.output) == 4 and steady.cuts == []
    assert steady.floor < 0.005
    assert steady.mean < 0.01
    assert boiling.mean > 5 * steady.mean and boiling.mean > 0.05
    # a pair's error by hand: a frame against itself warped by zero flow is 0
    pair = F.frame_pair(clean.frames[0], clean.frames[1])
    assert temporal_error(clean.frames[0], clean.frames[1], pair) < 0.005
    cut = S.scene_cut(photo, photo[::-1], SIZE, 5, 2).frames
    report = sequence_flicker(cut, cut)
    assert report.cuts == [2] and np.isnan(report.output[1]) and np.isfinite(report.mean)
    assert report.to_dict()["cuts"] == [2]


def test_flicker_measures_outputs_at_their_own_size(photo: np.ndarray) -> None:
    """Content frames larger than the outputs are resized to them first."""
    seq = S.pan(photo, (256, 192), frames=3, step=(8, 2))
    small = [resize_to(f, (128, 96)) for f in seq.frames]
    report = sequence_flicker(small, seq.frames)
    assert len(report.output) == 2 and report.mean < 0.01


def test_sequence_save_names_frames_in_order(tmp_path: Path, photo: np.ndarray) -> None:
    seq = S.pan(photo, (32, 24), frames=3, step=(2, 0))
    paths = seq.save(tmp_path / "seq")
    assert [p.name for p in paths] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    again = S.load_still(paths[1])
    assert np.abs(again - seq.frames[1]).max() <= 0.5 / 255 + 1e-6


def test_flow_needs_frames_of_one_size(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="different sizes"):
        F.dense_flow(photo[:32, :32], photo[:32, :40])
    with pytest.raises(ValueError, match="differ in size"):
        F.warp(photo[:32, :32], np.zeros((16, 16, 2), np.float32))
