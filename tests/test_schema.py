"""The one parameter schema (shared/schema.py): its fields match StyleParams, its checks
name the field, and the presets keep their tuned values."""

from __future__ import annotations

import dataclasses

import pytest

from neural_style.daemon.engine import params as daemon_params
from neural_style.daemon.engine.params import StyleParams
from neural_style.shared import limits, schema


def test_fields_are_style_params_fields_with_the_same_defaults() -> None:
    fields = dataclasses.fields(StyleParams)
    assert [f.name for f in fields] == [p.name for p in schema.FIELDS]
    made = StyleParams().to_dict()
    assert made == schema.defaults()  # no list-valued defaults: None means "not given"


def test_enum_choices_are_the_engines_enums() -> None:
    for name, kind in daemon_params._ENUM_FIELDS.items():
        assert schema.BY_NAME[name].choices == tuple(m.value for m in kind), name


def test_presets_keep_their_values_and_the_old_name() -> None:
    lbfgs = {"optimizer": "lbfgs", "scales": [], "precision": "auto"}
    tuned = {
        "fast": {"size": 384, "iterations": 100, **lbfgs},
        "balanced": {"size": 512, "iterations": 520, "adam_tail": 0.6, **lbfgs},
        "quality": {"size": 1024, "iterations": 1000, "adam_tail": 0.7, **lbfgs},
    }
    assert tuned == schema.PRESETS
    assert daemon_params.PRESETS is schema.PRESETS
    values = schema.preset_values("fast")
    values["scales"].append(1)  # a copy: the table stays as it is
    assert schema.PRESETS["fast"]["scales"] == []


def test_bounds_come_from_limits() -> None:
    size = schema.BY_NAME["size"]
    assert (size.lo, size.hi) == (limits.MIN_WORK_SIDE, limits.MAX_WORK_SIDE)
    assert schema.BY_NAME["style_blend"].max_len == limits.MAX_STYLES
    assert schema.BY_NAME["iterations"].hi == limits.MAX_ITERATIONS
    assert schema.BY_NAME["adam_tail"].hi == limits.MAX_ADAM_TAIL < 1


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"sise": 3}, "sise", "Unknown parameter(s): sise."),
        ({"size": 31}, "size", "Invalid parameter size: 31 is not an integer in [32, 4096]."),
        ({"size": 64.0}, "size", "not an integer"),
        ({"size": True}, "size", "not an integer"),
        ({"style_weight": float("inf")}, "style_weight", "not a number in [0, 1e+12]"),
        ({"optimizer": "sgd"}, "optimizer", "not one of adam, lbfgs"),
        ({"keep_size": 1}, "keep_size", "not true or false"),
        ({"scales": [16, 512]}, "scales", "items must be integers in [32, 4096]"),
        ({"scales": "512"}, "scales", "not a list"),
        ({"style_blend": [1.0] * 9}, "style_blend", "needs 1 to 8 items"),
        ({"seed": 2**32}, "seed", "[0, 4294967295]"),
        ({"preset": "ultra"}, "preset", "Unknown preset 'ultra'"),
    ],
)
def test_check_names_the_field(data: dict, field: str, text: str) -> None:
    with pytest.raises(schema.ParamError) as info:
        schema.check(data)
    assert info.value.field == field and text in info.value.message
    assert info.value.code.value == "bad_request"


def test_from_dict_layers_defaults_preset_and_given_values() -> None:
    values = schema.from_dict({"preset": "balanced", "size": 256})
    assert values["size"] == 256 and values["iterations"] == 520
    assert values["optimizer"] == "lbfgs" and values["tv_weight"] == 30.0
    assert schema.from_dict({"preset": None}) == schema.defaults()
    with pytest.raises(schema.ParamError, match="must increase strictly"):
        schema.from_dict({"size": 512, "scales": [512, 256]})
    with pytest.raises(schema.ParamError, match="one step per scale"):
        schema.from_dict({"size": 512, "scales": [256, 512], "iterations": 1})
    with pytest.raises(schema.ParamError, match="cannot both be 0"):
        schema.from_dict({"content_weight": 0, "style_weight": 0})


def test_schema_is_standard_library_only() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(schema.__file__).read_text())
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    stdlib = {"__future__", "math", "collections.abc", "dataclasses", "typing"}
    assert imported <= stdlib | {"", "errors"}  # "" and "errors": relative (from . import)
