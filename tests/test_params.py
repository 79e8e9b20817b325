"""Method parameters convert by their annotation and resolve from defaults, dataset, preset, overrides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from oodbench.api import Method
from oodbench.errors import ConfigError
from oodbench.params import resolve_params


@dataclass(frozen=True)
class Knobs:
    flag: bool = False
    count: int = 3
    rate: float = 0.5
    label: str = "a"
    sizes: tuple[int, ...] = (1, 2)
    pair: tuple[float, str] = (1.0, "x")
    # a float field whose default is None: typed by its annotation, not by its default
    cap: Optional[float] = None
    depth: int | None = 4
    mode: Literal["minimax", "nonsaturating"] = "minimax"


class Knobbed(Method):
    name = "knobbed"
    Params = Knobs
    dataset_defaults = {"base": {"count": 7}}
    preset_defaults = {"fast": {"count": 1, "rate": "0.25"}}


@pytest.mark.parametrize("field,text,value", [
    ("flag", "true", True), ("flag", "No", False), ("count", "12", 12), ("rate", "1e-3", 0.001),
    ("label", "b c", "b c"), ("sizes", "4,5;6", (4, 5, 6)), ("pair", "2.5;y", (2.5, "y")),
    ("cap", "0.2", 0.2), ("cap", "none", None), ("cap", "3", 3.0), ("depth", "None", None), ("depth", "9", 9),
    ("mode", "nonsaturating", "nonsaturating"),
])
def test_command_line_strings_convert_by_annotation(field, text, value):
    converted = getattr(resolve_params(Knobbed, "other", "other", {field: text}), field)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize("field,text", [("flag", "maybe"), ("count", "2.5"), ("cap", "high"), ("mode", "other"),
                                        ("pair", "1;2;3"), ("sizes", "1,a")])
def test_values_that_do_not_fit_the_annotation_are_clear_errors(field, text):
    with pytest.raises(ConfigError, match=rf"knobbed\.{field}={text!r} is not a valid"):
        resolve_params(Knobbed, "other", "other", {field: text})


def test_layers_defaults_then_dataset_then_preset_then_overrides():
    assert resolve_params(Knobbed, "other", "other").count == 3
    assert resolve_params(Knobbed, "base", "other").count == 7
    fast = resolve_params(Knobbed, "base", "fast")
    assert (fast.count, fast.rate) == (1, 0.25)
    assert resolve_params(Knobbed, "base", "fast", {"count": "5"}).count == 5
    assert resolve_params(Knobbed, "base", "fast", {"sizes": [3]}).sizes == (3,)  # typed values from Python pass


def test_unknown_parameters_list_the_valid_ones():
    with pytest.raises(ConfigError, match="(?s)no parameter 'colour'.*cap, count, depth"):
        resolve_params(Knobbed, "other", "other", {"colour": "red"})


def test_reduced_settings_name_what_the_preset_changed_against_the_paper():
    from oodbench.params import reduced_settings

    fast = resolve_params(Knobbed, "base", "fast")
    assert reduced_settings(Knobbed, "base", "fast", fast) == "count 1 (paper 7), rate 0.25 (paper 0.5)"
    assert reduced_settings(Knobbed, "base", "other", resolve_params(Knobbed, "base", "other")) == ""
    restored = resolve_params(Knobbed, "base", "fast", {"count": "7"})  # set back to the paper's value
    assert reduced_settings(Knobbed, "base", "fast", restored) == "rate 0.25 (paper 0.5)"


class Protocolled(Method):
    name = "protocolled"
    Params = Knobs
    dataset_defaults = {"base": {"count": 7}}
    protocol_defaults = {"strict": {"rate": 0.1, "label": "s"}, "strict:base": {"label": "sb"}}
    preset_defaults = {"fast": {"count": 1}}


def test_protocol_layers_come_after_the_dataset_and_before_the_preset():
    params = resolve_params(Protocolled, "base", "fast", protocol="strict")
    assert (params.count, params.rate, params.label) == (1, 0.1, "sb")
    assert resolve_params(Protocolled, "other", "none", protocol="strict").label == "s"
    assert resolve_params(Protocolled, "base", "none").rate == 0.5  # the clean protocol: the Params defaults


def test_declared_protocols_are_those_any_setting_names():
    from oodbench.params import declared_protocols

    class Searching(Protocolled):
        search_space_under = {"wide": {"rate": (0.1, 0.2)}}

    assert declared_protocols(Knobbed) == set()
    assert declared_protocols(Searching) == {"strict", "wide"}
