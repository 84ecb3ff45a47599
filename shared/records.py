"""The records that travel from the engine to the user, each defined once.

- :class:`Step`: one optimiser step. The engine's callback receives it, the ``progress``
  message carries its fields (plus ``eta_s``), the result's per-step table has one column
  per field (:data:`STEP_COLUMNS`), and the CLI's JSON report is built from it.
- :class:`JobStats`: a finished job's statistics (the ``result`` message's ``stats``).
- :class:`EventKind`: what a client's job event is (accepted, progress, preview, done,
  cancelled).

Standard library only: this package is copied into the GIMP plug-in folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class Step:
    """One optimiser step, as reported to the callback (immutable, cheap to keep)."""

    step: int
    """1-based step number within the whole job."""
    total: int
    """Steps the job will run (``step == total`` on the last one)."""
    loss: float
    """The whole loss (content + style + tv)."""
    content: float
    """Weighted content term (content_weight x normalised content loss)."""
    style: float
    """Weighted style term."""
    tv: float
    """Weighted total-variation term."""
    elapsed_s: float
    """Seconds since the job started (targets included)."""
    scale: int
    """Long side, in pixels, of the image being optimised at this step."""
    preview: Any = field(default=None, compare=False, repr=False)
    """RGB float32 [0, 1] image (numpy) at working size, only on every
    ``preview_every``-th step; never sent as part of the record."""

    @property
    def elapsed(self) -> float:
        """Old name of :attr:`elapsed_s` (kept for callers written before the rename)."""
        return self.elapsed_s

    def to_dict(self) -> dict[str, float | int]:
        """The record's fields (no preview), the names used on the wire and in tables."""
        return {
            "step": int(self.step),
            "total": int(self.total),
            "loss": float(self.loss),
            "content": float(self.content),
            "style": float(self.style),
            "tv": float(self.tv),
            "elapsed_s": float(self.elapsed_s),
            "scale": int(self.scale),
        }

    def to_report(self) -> dict[str, float | int]:
        """The CLI's ``--report`` per-iteration entry, in its documented (README) shape:
        there ``total`` is the loss and ``time_s`` the elapsed time."""
        return {
            "step": self.step,
            "total": self.loss,
            "content": self.content,
            "style": self.style,
            "tv": self.tv,
            "time_s": self.elapsed_s,
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], preview: Any = None) -> Step:
        """Inverse of :meth:`to_dict` (a table row or a ``progress`` message's fields)."""
        return cls(
            step=int(data["step"]),
            total=int(data["total"]),
            loss=float(data["loss"]),
            content=float(data["content"]),
            style=float(data["style"]),
            tv=float(data["tv"]),
            elapsed_s=float(data["elapsed_s"]),
            scale=int(data.get("scale", 0)),
            preview=preview,
        )


#: Columns of the result's per-step float64 table: :class:`Step`'s fields, in order.
STEP_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Step) if f.name != "preview")


@dataclass
class JobStats:
    """What the daemon measured for one finished job (sent as ``result.stats``)."""

    elapsed_s: float = 0.0
    """The engine's time for the whole job (targets and every scale)."""
    queue_wait_s: float = 0.0
    steps: int = 0
    stopped: bool = False
    style_cache_hit: bool = False
    work_size: list[int] = field(default_factory=lambda: [0, 0])
    """``[width, height]`` of the last (finest) working scale."""
    precision: str = "fp32"
    first_step_s: float = 0.0
    """Time to the first step: the targets (style Gram matrices, content features)."""
    step_s: float = 0.0
    """Median time of one of the last 20 steps."""
    loss: float = 0.0
    content: float = 0.0
    style: float = 0.0
    tv: float = 0.0
    device: str = ""
    weights: dict[str, Any] = field(default_factory=dict)
    """``{"path", "sha256", "synthetic"}`` of the daemon's VGG-19 weights."""
    frame: dict[str, Any] = field(default_factory=dict)
    """Frames mode: ``continued`` (started from the warped previous frame), ``cut`` (a
    scene cut: run on its own), ``reliable`` and ``photometric`` (the flow's check)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobStats:
        """From ``result.stats``; unknown keys (a newer daemon's) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class EventKind(str, Enum):
    """What a job event is; every client event class names its kind in ``KIND``."""

    ACCEPTED = "accepted"
    PROGRESS = "progress"
    PREVIEW = "preview"
    DONE = "done"
    CANCELLED = "cancelled"
