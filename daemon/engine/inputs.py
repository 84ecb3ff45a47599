"""What the optimisation starts from and sees: checked style images, colour-mode inputs,
init images and style blend weights, and the mask compositing of the result."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neural_style.daemon.engine import color, images
from neural_style.daemon.engine.params import ColorMode, Init, StyleParams
from neural_style.shared import limits


def style_inputs(styles: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The style images as float RGB (their alpha dropped); one to MAX_STYLES of them."""
    if not styles:
        raise images.bad("At least one style image is needed.")
    if len(styles) > limits.MAX_STYLES:
        raise images.bad(f"At most {limits.MAX_STYLES} style images can be blended.")
    return [
        images.split_alpha(images.to_float(images.as_hwc(s, f"style image {i + 1}")))[0]
        for i, s in enumerate(styles)
    ]


def color_inputs(
    mode: ColorMode, content_rgb: np.ndarray, style_rgbs: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """What the optimisation sees: luminance images, colour-matched styles, or as is."""
    if mode is ColorMode.HISTOGRAM:
        return content_rgb, [color.match_color(s, content_rgb) for s in style_rgbs]
    if mode is ColorMode.LUMINANCE:
        content_y = color.luminance(content_rgb)
        styles = [
            color.gray_rgb(color.match_luminance(color.luminance(s), content_y)) for s in style_rgbs
        ]
        return color.gray_rgb(content_y), styles
    return content_rgb, style_rgbs


def init_input(
    init: np.ndarray | None, mode: ColorMode, size: tuple[int, int]
) -> np.ndarray | None:
    """The starting image as the optimisation sees it (RGB, luminance when that mode)."""
    if init is None:
        return None
    init = images.as_hwc(init, "init image")
    if (init.shape[1], init.shape[0]) != size:
        raise images.bad(
            f"The init image is {init.shape[1]}x{init.shape[0]}; it must have the "
            f"content's size {size[0]}x{size[1]}."
        )
    init_rgb = images.split_alpha(images.to_float(init))[0]
    if mode is ColorMode.LUMINANCE:
        return color.gray_rgb(color.luminance(init_rgb))
    return init_rgb


def blend_weights(params: StyleParams, count: int) -> list[float]:
    """The styles' blend weights (``style_blend``, else equal), normalised to sum 1."""
    weights = list(params.style_blend) if params.style_blend else [1.0] * count
    if len(weights) != count:
        raise images.bad(
            f"style_blend has {len(weights)} weights but {count} style image(s) were given."
        )
    total = sum(weights)
    return [w / total for w in weights]


def initial_image(params: StyleParams, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """The first scale's start when no init image is given: ``params.init``."""
    if params.init is Init.CONTENT:
        return content
    if params.init is Init.MATCHED:
        return color.match_color(content, style)
    if params.init is Init.NOISE:
        rng = np.random.default_rng(params.seed)
        return rng.uniform(0.0, 1.0, content.shape).astype(np.float32)
    return images.resize(style, (content.shape[1], content.shape[0]))


def composite(stylized: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask`` (1 = stylized, fractions blend) applied over the original."""
    m = images.to_float(mask)
    if m.shape[2] != 1:  # an RGB(A) mask: its luma
        m = (images.split_alpha(m)[0] @ images.LUMA)[:, :, None]
    m = images.resize(m, (stylized.shape[1], stylized.shape[0]))
    return m * stylized + (1.0 - m) * original
