"""Where AIM types come from: built-ins, class paths, and the ``aif.aims`` entry points."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aif import AIM, RegistryError
from aif.aims.builtin import Relay
from aif.aims.registry import builtin_names, plugin_names, resolve_aim_type


def test_every_builtin_resolves_to_an_aim_with_parseable_ports() -> None:
    for name in builtin_names():
        cls = resolve_aim_type(name)
        assert issubclass(cls, AIM)
        cls.port_specs()  # raises on a bad type string
        assert cls.description(), f"{name} has no docstring"


def test_class_path_resolves() -> None:
    assert resolve_aim_type("aif.aims.builtin:Relay") is Relay


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rely", "unknown AIM type 'rely' (did you mean 'relay'?); known types: "),
        ("no.such.module:Thing", "cannot import module 'no.such.module'"),
        (
            "aif.aims.builtin:Rely",
            "module 'aif.aims.builtin' has no 'Rely' (did you mean 'Relay'?)",
        ),
        ("aif.aims.builtin:digest", "'aif.aims.builtin:digest' is not a subclass of aif.AIM"),
        (":Relay", "is not of the form 'package.module:ClassName'"),
    ],
)
def test_bad_types_say_what_is_known(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        resolve_aim_type(text)
    assert message in str(caught.value)


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Iterator[Path]:
    """A real installed distribution (dist-info on sys.path) publishing an entry point."""
    pkg = tmp_path / "aif_test_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from aif import AIM\n\n"
        "class Thermometer(AIM):\n"
        '    """Reads a temperature."""\n\n'
        '    outputs = {"celsius": "float32"}\n\n'
        "class NotAnAIM:\n"
        "    pass\n"
    )
    info = tmp_path / "aif_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aif-test-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[aif.aims]\nthermometer = aif_test_plugin:Thermometer\nbroken = aif_test_plugin:NotAnAIM\n"
    )
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("aif_test_plugin", None)
        importlib.invalidate_caches()


def test_entry_point_plugins_resolve_by_name(plugin_dist: Path) -> None:
    assert "thermometer" in plugin_names()
    cls = resolve_aim_type("thermometer")
    assert cls.__name__ == "Thermometer"
    assert cls.port_specs()["celsius"].type_text == "float32"


def test_entry_point_that_is_not_an_aim_is_refused(plugin_dist: Path) -> None:
    with pytest.raises(RegistryError, match="entry point 'aif_test_plugin:NotAnAIM' is not"):
        resolve_aim_type("broken")


def test_unknown_name_lists_plugins_too(plugin_dist: Path) -> None:
    with pytest.raises(RegistryError, match="thermometer"):
        resolve_aim_type("thermometr")


def test_the_imc_chip_comes_in_through_the_entry_point_door() -> None:
    """aif's own hardware AIM is a plug-in like a third party's, not a built-in."""
    from aif.aims.analog.imc_chip.driver import IMCChip

    assert "imc_chip" in plugin_names()
    assert "imc_chip" not in builtin_names()
    assert resolve_aim_type("imc_chip") is IMCChip
    assert IMCChip.technology == "Hardware"


def test_prefixed_types_come_from_the_package_that_publishes_the_prefix() -> None:
    """The registry knows nothing of the Store: ``store:`` is found through the entry
    point aif's pyproject publishes, and a class path is never mistaken for a prefix."""
    from aif.aims.registry import prefixed_types, type_prefix

    assert type_prefix("store:tiny@1.0.0") == "store"
    assert type_prefix("tests.helpers.aims:Ticker") is None
    assert type_prefix("relay") is None
    resolver = prefixed_types("store", Path("/nonexistent-state"))
    assert type(resolver).__name__ == "StoreTypes"
    with pytest.raises(
        RegistryError, match=r"no installed package resolves AIM types 'nope:\.\.\.'"
    ):
        prefixed_types("nope")
