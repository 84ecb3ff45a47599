"""The engine: the maths and the model, a pure core with ``StyleTransfer.stylize`` as its entry.

Images + parameters in, image + statistics out; nothing here knows of sockets or GIMP. The
public names are re-exported here and imported on first use, so that ``from
neural_style.daemon.engine import StyleParams`` (or ``...engine.params``) loads no TensorFlow:

- ``transfer``: StyleTransfer; ``params``: StyleParams, StylizeResult, Iterate, PRESETS, STOP
- ``precision``, ``adam``, ``lbfgs_run``, ``ladder``, ``targets``, ``inputs``, ``record``,
  ``graphs``: the pieces of one job; ``vgg``, ``losses``, ``lbfgs``, ``tiling``, ``color``,
  ``images``: pure functions under them
- ``weights``, ``standin``: the VGG-19 weights and the trained stand-in; ``quality``,
  ``bench``: measures of the results and of the speed
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neural_style.daemon.engine.adam import (
        ADAM_TAIL_RAMP,
        adam_schedule,
        split_tail,
        tail_schedule,
    )
    from neural_style.daemon.engine.ladder import split_iterations, upsample_result
    from neural_style.daemon.engine.params import (
        PRESETS,
        STOP,
        Iterate,
        StyleParams,
        StylizeResult,
    )
    from neural_style.daemon.engine.precision import (
        describe_device,
        has_fast_bf16,
        job_precision,
        resolve_precision,
    )
    from neural_style.daemon.engine.record import Callback
    from neural_style.daemon.engine.transfer import StyleTransfer

#: Public name -> the module that defines it.
_HOMES = {
    "StyleTransfer": "transfer",
    "StyleParams": "params",
    "StylizeResult": "params",
    "Iterate": "params",
    "PRESETS": "params",
    "STOP": "params",
    "Callback": "record",
    "resolve_precision": "precision",
    "job_precision": "precision",
    "has_fast_bf16": "precision",
    "describe_device": "precision",
    "adam_schedule": "adam",
    "split_tail": "adam",
    "tail_schedule": "adam",
    "ADAM_TAIL_RAMP": "adam",
    "split_iterations": "ladder",
    "upsample_result": "ladder",
}

__all__ = [
    "ADAM_TAIL_RAMP",
    "PRESETS",
    "STOP",
    "Callback",
    "Iterate",
    "StyleParams",
    "StyleTransfer",
    "StylizeResult",
    "adam_schedule",
    "describe_device",
    "has_fast_bf16",
    "job_precision",
    "resolve_precision",
    "split_iterations",
    "split_tail",
    "tail_schedule",
    "upsample_result",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
