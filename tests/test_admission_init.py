"""The init image a refine sends counts in the daemon's memory estimate (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neural_style.daemon.service import admission
from neural_style.daemon.service.jobs import ServiceJob
from neural_style.shared.client import Done, TooLarge
from tests.daemon_helpers import image
from tests.service_fakes import StepEngine, client_for, running_server

MPX = 1000 * 1000


def rgb(w: int, h: int, value: int = 10) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def submit_fields(init: np.ndarray | None) -> dict:
    fields = {
        "job": "j",
        "params": {"size": 32},
        "content": image(rgb(1000, 1000)),
        "styles": [image(rgb(8, 8))],
    }
    if init is not None:
        fields["init"] = image(init)
    return fields


def test_the_estimate_counts_the_init_image():
    content, styles, work = rgb(1000, 1000), [rgb(8, 8)], (32, 32)
    plain = admission.estimate_job_bytes(content, styles, work)
    # RGBA float, the largest form an init takes: same pixels, same figure.
    init = np.zeros((1000, 1000, 4), np.float32)
    refined = admission.estimate_job_bytes(content, styles, work, init)
    assert refined - plain == MPX * admission.EST_INIT_BYTES_PER_PIXEL


def test_a_submitted_init_raises_the_jobs_estimate_and_bytes():
    plain = ServiceJob.from_submit(b"c", submit_fields(None))
    refined = ServiceJob.from_submit(b"c", submit_fields(rgb(1000, 1000, 200)))
    assert refined.estimate - plain.estimate == MPX * admission.EST_INIT_BYTES_PER_PIXEL
    assert refined.nbytes - plain.nbytes == 3 * MPX  # the queue's bound saw it already


def test_a_refine_over_the_memory_bound_is_too_large(tmp_path: Path):
    plain = ServiceJob.from_submit(b"c", submit_fields(None)).estimate
    # Room for the job alone, not for the job and its init image.
    bound = plain + MPX * admission.EST_INIT_BYTES_PER_PIXEL // 2
    engine = StepEngine()
    with running_server(tmp_path, engine, max_job_bytes=bound) as srv, client_for(srv) as c:
        content, style = image(rgb(1000, 1000)), [image(rgb(8, 8))]
        params = {"size": 32, "iterations": 5}
        assert isinstance(c.stylize(content, style, params), Done)
        with pytest.raises(TooLarge, match=r"would need about \d+ MiB"):
            c.stylize(content, style, params, init=image(rgb(1000, 1000, 200)))
        small = image(rgb(100, 100))
        assert isinstance(c.stylize(small, style, params, init=image(rgb(100, 100, 9))), Done)
    assert engine.inits[0] is None and engine.inits[1].shape == (100, 100, 3)
