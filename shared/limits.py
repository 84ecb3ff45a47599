"""Size and range limits: the one place each bound is written down.

Both ends import these: the CLI and engine refuse inputs beyond them, the protocol
rejects frames beyond them before decoding, and the daemon advertises them in ``welcome``.
"""

from __future__ import annotations

#: Largest image (content, style or mask) accepted anywhere, in pixels (8192 x 8192).
MAX_IMAGE_PIXELS: int = 8192 * 8192
#: Largest side of any accepted image, in pixels.
MAX_IMAGE_SIDE: int = 16384
#: Largest working size (long side the optimisation runs at), in pixels.
MAX_WORK_SIDE: int = 4096
#: Smallest working size: below this VGG-19's five pooling stages leave nothing to compare.
MIN_WORK_SIDE: int = 32
#: Iteration bounds for one job.
MIN_ITERATIONS: int = 1
MAX_ITERATIONS: int = 100_000
#: At most this many style images blended in one job.
MAX_STYLES: int = 8
#: Channels an image may have: gray, gray+alpha, RGB, RGBA.
ALLOWED_CHANNELS: tuple[int, ...] = (1, 2, 3, 4)
#: Loss weights must lie in [0, MAX_WEIGHT].
MAX_WEIGHT: float = 1e12
#: Learning-rate bounds for Adam.
MIN_LEARNING_RATE: float = 1e-6
MAX_LEARNING_RATE: float = 10.0
#: Smallest short side at every working scale (content and styles): VGG-19's four
#: 2x2 poolings before block5 leave nothing of a side under 16 pixels.
MIN_WORK_SHORT_SIDE: int = 16
#: Connections the daemon accepts at once (each costs a file descriptor); more are
#: refused at the handshake by its ZAP handler.
MAX_CONNECTIONS: int = 256
#: Jobs (running + queued) one connection may have open at once.
MAX_JOBS_PER_CLIENT: int = 4
#: Seeds are unsigned 32-bit integers.
MAX_SEED: int = 2**32 - 1
#: A preview every N-th step, N at most this (0 = never).
MAX_PREVIEW_EVERY: int = 1_000_000
#: Style image's long side relative to the working long side.
MIN_STYLE_SCALE: float = 0.05
MAX_STYLE_SCALE: float = 8.0
#: Decays (iterate averaging, Adam's β1 and β2) lie in [0, MAX_DECAY].
MAX_DECAY: float = 0.999
#: An L-BFGS job's Adam tail (``adam_tail``) takes at most this share of its steps: L-BFGS
#: keeps at least a tenth of them to find the basin Adam then descends.
MAX_ADAM_TAIL: float = 0.9
#: ... and the most of that tail an L-BFGS polish may take (``polish``).
MAX_POLISH: float = 0.9
#: At most this many rungs in a coarse-to-fine ladder.
MAX_SCALES: int = 8
#: Each relative style weight lies in [0, MAX_BLEND_WEIGHT].
MAX_BLEND_WEIGHT: float = 1e6
#: The plug-in dialog's narrower ranges (what a slider offers; the engine accepts more).
UI_MIN_STYLE_SCALE: float = 0.1
UI_MAX_STYLE_SCALE: float = 4.0
#: The plug-in's style strength (a multiplier of the default style weight) lies in [0, this].
UI_MAX_STYLE_STRENGTH: float = 100.0
