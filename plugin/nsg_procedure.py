"""The procedure's registration data: its documentation, its arguments (kind, name, label,
tooltip, range), and the order the dialog shows them in."""

from __future__ import annotations

from typing import Any

from nsg_estimates import preset_label
from nsg_params import (
    DEFAULT_BLEND,
    DEFAULT_ITERATIONS,
    DEFAULT_MAX_SIZE,
    DEFAULT_PRESET,
    DEFAULT_STRENGTH,
    DEFAULT_STYLE_SCALE,
    MAX_ITERATIONS,
    MAX_MAX_SIZE,
    MAX_STRENGTH,
    MAX_STYLE_SCALE,
    MIN_ITERATIONS,
    MIN_MAX_SIZE,
    MIN_STYLE_SCALE,
)

#: The procedure's documentation (GIMP's Procedure Browser, for scripts).
PROC_BLURB = "Repaint the layer in the style of another layer (neural style transfer)"


PROC_HELP = (
    "Sends the active layer (or the selection's bounding box of it) and the style layer (or "
    "style-file, a painting on disk) to the Neural Style daemon (start it with 'neural-style "
    "serve') and adds the result as a new layer at the top of the layer stack. "
    "style-strength multiplies the style weight: style/content weight ratio = strength x 1e-6 "
    "(1 = engine default). style-layer-2 adds a second style with share style-blend; "
    "style-scale sizes the style's brush strokes; a preset other than 'custom' chooses the "
    "optimiser, a coarse-to-fine ladder and the iteration count (max-size stays the working "
    "size). A selection limits the effect: outside it the result equals the layer. refine, on "
    "a result layer, continues from it."
)


#: The procedure's arguments, in registration order: (kind, name, label, tooltip, *values).
#: The first six are the original ones; the rest are appended so positional callers keep
#: working. Tooltips speak to artists; docs/plugin.md says what each one does technically.
ARGUMENTS: list[tuple[Any, ...]] = [
    ("layer", "style-layer", "St_yle layer",
     "The painting whose style you want: any layer of any open image", True),
    ("int", "iterations", "_Iterations", "How long to work on the picture (only with the "
     "Custom preset): more is stronger and slower", MIN_ITERATIONS, MAX_ITERATIONS,
     DEFAULT_ITERATIONS),
    ("int", "max-size", "_Max size", "Size the picture is painted at (long side, in "
     "pixels); the result is scaled back to the layer. Bigger shows finer strokes but takes "
     "longer", MIN_MAX_SIZE, MAX_MAX_SIZE, DEFAULT_MAX_SIZE),
    ("double", "style-strength", "Style stre_ngth", "How strongly the style takes over: 1 is "
     "the usual balance, 2 paints more boldly, 0.5 keeps more of your picture",
     0.0, MAX_STRENGTH, DEFAULT_STRENGTH),
    ("boolean", "preserve-color", "Preserve co_lors",
     "Keep your picture's own colours and take only the brushwork from the style", False),
    ("string", "endpoint", "Daemon _endpoint", "Where the Neural Style service runs; leave "
     "empty to find it on this computer (tcp://HOST:PORT for another one)", ""),
    ("layer", "style-layer-2", "_Second style layer",
     "Optionally, a second painting to mix in", True),
    ("double", "style-blend", "Style _blend", "How much of the second painting: 0 none, 0.5 "
     "half and half, 1 only the second", 0.0, 1.0, DEFAULT_BLEND),
    ("double", "style-scale", "Style s_cale", "Size of the brush strokes: 1 as in the "
     "painting, 2 bigger, 0.5 smaller", MIN_STYLE_SCALE, MAX_STYLE_SCALE, DEFAULT_STYLE_SCALE),
    ("choice", "preset", "P_reset", "How much time to spend: Fast for a first look, Quality "
     "for the final picture", [
         ("fast", preset_label("fast"), "A quick first look"),
         ("balanced", preset_label("balanced"), "Cleaner strokes; a few minutes"),
         ("quality", preset_label("quality"), "The most finished result; takes longest"),
         ("custom", "Custom (Advanced: Iterations)", "As many steps as Iterations says"),
     ], DEFAULT_PRESET),
    ("choice", "color-mode", "C_olor mode", "How Preserve colors keeps your picture's colours", [
        ("luminance", "Keep my colours", "Only the brushwork comes from the style"),
        ("histogram", "Blend the palettes", "The style's colours are shifted towards yours "
         "first"),
    ], "luminance"),
    ("file", "style-file", "Or open _painting…", "A painting (any image file) to take the "
     "style from, when no style layer is chosen", True, None),
    ("boolean", "refine", "Re_fine this result", "When the selected layer is a Neural Style "
     "result: carry on painting from it (your original picture stays the content)", True),
]  # fmt: skip


#: The settings dialog (neural_style.show_dialog), top to bottom: what an artist changes
#: first; engine settings and the daemon's address under a collapsed "Advanced" (the
#: procedure's argument order differs: new arguments are appended there so positional
#: callers keep working).
DIALOG_FIELDS = [
    "preset", "estimate", "style-layer", "style-file", "style-strength", "preserve-color",
    "color-mode", "style-layer-2", "style-blend", "style-scale", "refine", "service",
    "advanced",
]  # fmt: skip


ADVANCED_FIELDS = ["iterations", "max-size", "endpoint"]
