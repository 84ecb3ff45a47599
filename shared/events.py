"""What a client's :class:`~.client.Job` reports: Accepted, Progress, Preview, Done and
Cancelled, each with its :class:`~.records.EventKind`.

Standard library only (copied into the GIMP plug-in folder with the rest of the package).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .imagebuf import ImageBuf
from .records import EventKind, JobStats, Step


@dataclass
class Accepted:
    """The daemon queued the job; ``position`` jobs run before it (0 = running now).

    Repeats with a smaller position while the job waits.
    """

    KIND: ClassVar[EventKind] = EventKind.ACCEPTED
    position: int


@dataclass(frozen=True)
class Progress(Step):
    """A :class:`Step` as its ``progress`` message carried it (no preview: previews come
    as :class:`Preview`), plus the daemon's estimate of the time left."""

    KIND: ClassVar[EventKind] = EventKind.PROGRESS
    eta_s: float = 0.0

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Progress:
        """From a ``progress`` message's fields (unknown ones, a newer daemon's, ignored)."""
        step = Step.from_dict(data)
        shared = {f.name: getattr(step, f.name) for f in fields(Step)}
        return cls(**shared, eta_s=float(data.get("eta_s", 0.0)))

    def to_step(self, preview: Any = None) -> Step:
        """The step record this progress message carried."""
        return Step.from_dict(asdict(self), preview)


@dataclass
class Preview:
    """A downscaled RGB u8 snapshot of the image being optimised."""

    KIND: ClassVar[EventKind] = EventKind.PREVIEW
    image: ImageBuf
    step: int


@dataclass
class Done:
    """The result: same size, channels and dtype as the content (unless keep_size=False)."""

    KIND: ClassVar[EventKind] = EventKind.DONE
    image: ImageBuf
    #: ``result.stats`` as sent (a plain map); :attr:`job_stats` is the typed record.
    stats: dict[str, Any]
    #: Every step's record.
    iterates: list[Step] = field(default_factory=list)

    @property
    def job_stats(self) -> JobStats:
        return JobStats.from_dict(self.stats)


@dataclass
class Cancelled:
    """The job ended early: ``reason`` is client, client_gone or shutdown."""

    KIND: ClassVar[EventKind] = EventKind.CANCELLED
    reason: str = "client"
    #: Last step the engine ran, and the step it was at when the cancel arrived.
    step: int = 0
    requested_at_step: int = 0


Event = Accepted | Progress | Preview | Done | Cancelled
