"""What ``aif aim list``/``show`` and docs/aims.md say of an AIM type, read from its class."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

from aif import AIM, RegistryError
from aif.aims import catalog
from aif.aims.registry import builtin_names

ROOT = Path(__file__).resolve().parents[2]


def test_docs_aims_md_is_what_the_code_says() -> None:
    """docs/aims.md is generated: regenerate it with `aif aim list --markdown > docs/aims.md`."""
    assert (ROOT / "docs" / "aims.md").read_text() == catalog.reference_markdown()


def test_the_reference_lists_every_builtin_and_the_api_a_hardware_aim_uses() -> None:
    text = catalog.reference_markdown()
    for name in builtin_names():
        assert f"### `{name}`" in text
    assert "### `imc_chip`" in text  # aif's own entry point
    for member in ("on_suspend", "on_resume", "drain_on_stop", "work_dir", "queues", "resources"):
        assert f"| `{member}" in text or f"| `await {member}(" in text, member
    assert "| `Record` | `port`, `value` |" in text


class _Params(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    gain: float = pydantic.Field(default=1.5, description="multiplies\n  every value")
    mode: Literal["fast", "exact"] = "fast"
    tiles: list[pydantic.PositiveInt] = pydantic.Field(default_factory=lambda: [2, 3])
    address: str | None = None
    chip: str


class _Device(AIM):
    """A device.

    More text that is not the description.
    """

    inputs = {"x": "tensor<float32>[?,8]"}
    outputs = {"y": "{int32 n; float64[] v}"}
    Params = _Params
    queues = ("imc",)
    technology = "Hardware"
    drain_on_stop = True

    @classmethod
    def resources(cls, params: pydantic.BaseModel | None) -> tuple[str, ...]:
        return ("imc", "cpu")

    def capabilities(self) -> dict[str, Any]:
        """Tiles and their size, from the chip."""
        return {}


def test_describe_reads_ports_params_queues_and_capabilities() -> None:
    info = catalog.describe(_Device, "dev", "class path")
    assert info.description == "A device."
    assert [(p.name, p.direction, p.type) for p in info.ports] == [
        ("x", "input", "tensor<float32>[?,8]"),
        ("y", "output", "{int32 n; float64[] v}"),
    ]
    params = {p.name: p for p in info.params}
    assert list(params) == ["gain", "mode", "tiles", "address", "chip"]
    assert (params["gain"].type, params["gain"].default) == ("float", 1.5)
    assert params["gain"].description == "multiplies every value"
    assert params["mode"].type == '"fast" | "exact"'
    assert (params["tiles"].type, params["tiles"].default) == ("list[int]", [2, 3])
    assert params["address"].type == "str | None"
    assert params["chip"].required and not params["gain"].required
    assert info.queues == ("imc",) and info.queues_from_params
    assert info.capabilities == "Tiles and their size, from the chip."
    assert info.drain_on_stop and info.technology == "Hardware"
    assert info.params_schema is not None and "chip" in info.params_schema["required"]
    assert info.to_json()["ports"][0] == {
        "name": "x",
        "direction": "input",
        "type": "tensor<float32>[?,8]",
    }


def test_an_aim_that_declares_nothing_says_so() -> None:
    info = catalog.describe(AIM, "plain", "class path")
    assert info.params == () and info.capabilities is None and not info.queues_from_params


def test_describe_type_knows_builtins_entry_points_and_class_paths() -> None:
    assert catalog.describe_type("record-file").origin == "built-in"
    assert catalog.describe_type("imc_chip").origin == "entry point imc_chip from aif"
    relay = catalog.describe_type("aif.aims.builtin:Relay")
    assert (relay.origin, relay.class_path) == ("class path", "aif.aims.builtin:Relay")
    with pytest.raises(RegistryError, match="aif aim list"):
        catalog.describe_type("no-such-aim")
    with pytest.raises(RegistryError, match="cannot import"):
        catalog.describe_type("no_such_module:Thing")


def test_available_lists_builtins_then_entry_points_without_failing() -> None:
    infos = catalog.available()
    names = [i.type for i in infos]
    assert names[: len(builtin_names())] == builtin_names()
    assert "imc_chip" in names
    assert all(i.error is None for i in infos)
