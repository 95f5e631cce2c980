"""MPAI-AIF metadata: the models, metadata of AIM classes, and ``aif export`` output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pydantic
import pytest

from aif.aims.base import AIM
from aif.aims.builtin import Checksum, Relay
from aif.aims.metadata import (
    AIMMetadata,
    Identifier,
    Port,
    Specification,
    aim_metadata,
)
from aif.workflow import export_metadata, load_workflow_text, resolve
from aif.workflow.export import WorkflowMetadata

STANDARD_KEYS = {
    "Identifier",
    "APIProfile",
    "Description",
    "Types",
    "Ports",
    "SubAIMs",
    "Topology",
    "Implementations",
    "ResourcePolicies",
    "Documentation",
}


class Chip(AIM):
    """A hardware AIM.

    Second paragraph, not part of the description.
    """

    inputs: ClassVar[dict[str, str]] = {"weights": "tensor<float32>[?,64]"}
    outputs: ClassVar[dict[str, str]] = {"y": "float32[]"}
    version: ClassVar[str] = "2.3.0"
    implementer: ClassVar[str] = "acme"
    technology: ClassVar[str] = "Hardware"


def _identifier() -> Identifier:
    return Identifier(ImplementerID="aif", Specification=Specification(AIW="w", AIM="a"))


def test_aim_metadata_of_a_class() -> None:
    meta = aim_metadata(Chip, "chip")
    data = meta.model_dump(mode="json", exclude_none=True)
    assert set(data) == STANDARD_KEYS
    assert data["Identifier"] == {
        "ImplementerID": "acme",
        "Specification": {"Standard": "MPAI-AIF", "AIW": "", "AIM": "chip", "Version": "2.3.0"},
    }
    assert data["Description"] == "A hardware AIM."
    assert data["APIProfile"] == "Basic"
    assert data["Ports"] == [
        {
            "Name": "weights",
            "Direction": "InputOutput",
            "RecordType": "tensor<float32>[?,64]",
            "Technology": "Hardware",
            "Protocol": "",
            "IsRemote": False,
        },
        {
            "Name": "y",
            "Direction": "OutputInput",
            "RecordType": "float32[]",
            "Technology": "Hardware",
            "Protocol": "",
            "IsRemote": False,
        },
    ]
    assert data["Implementations"][0]["BinaryName"] == f"{__name__}:Chip"
    assert data["SubAIMs"] == [] and data["Topology"] == []


def test_builtin_metadata_round_trips_through_json() -> None:
    for cls, name in ((Relay, "relay"), (Checksum, "checksum")):
        meta = aim_metadata(cls, name)
        text = meta.model_dump_json()
        assert AIMMetadata.model_validate_json(text) == meta


def test_named_types_may_be_used_as_record_types() -> None:
    meta = AIMMetadata.model_validate(
        {
            "Identifier": _identifier().model_dump(),
            "Types": [
                {"Name": "frame_t", "Type": "{int32 frameNumber; byte[] frame}"},
                {"Name": "frames_t", "Type": "frame_t[]"},
            ],
            "Ports": [{"Name": "in", "Direction": "InputOutput", "RecordType": "frames_t"}],
        }
    )
    assert meta.Ports[0].Technology == "Software"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"Ports": [{"Name": "p", "Direction": "InputOutput", "RecordType": "int33"}]},
            "Ports[0].RecordType",
        ),
        ({"Ports": [{"Name": "p", "Direction": "Input", "RecordType": "int32"}]}, "Direction"),
        (
            {
                "Ports": [
                    {"Name": "p", "Direction": "InputOutput", "RecordType": "int32"},
                    {"Name": "p", "Direction": "OutputInput", "RecordType": "int32"},
                ]
            },
            "duplicate port name 'p'",
        ),
        (
            {
                "Topology": [
                    {
                        "Output": {"AIMName": "x", "PortName": "o"},
                        "Input": {"AIMName": "", "PortName": "i"},
                    }
                ]
            },
            "AIMName 'x' is not a SubAIM",
        ),
        ({"APIProfile": "basic"}, "APIProfile"),
        ({"Colour": "red"}, "Colour"),
    ],
)
def test_metadata_models_refuse_what_the_standard_does_not_allow(
    change: dict[str, Any], message: str
) -> None:
    data = {"Identifier": _identifier().model_dump(), **change}
    with pytest.raises(pydantic.ValidationError, match=message.replace("[", r"\[")):
        AIMMetadata.model_validate(data)


def test_port_direction_spellings() -> None:
    with pytest.raises(pydantic.ValidationError):
        Port.model_validate({"Name": "p", "Direction": "INPUT", "RecordType": "int32"})


WORKFLOW = """\
name: exported
description: For export.
version: "2.0.1"
profile: secure
aims:
  gen:
    type: tensor-source
    placement: process
    heartbeat_timeout: 3.5
  relay:
    type: relay
    placement: remote
  sink:
    type: collect
connections:
  - gen.out -> sink.in
inputs:
  relay.in: [1, 2]
outputs:
  - relay.out
"""


def test_export_metadata_of_a_workflow() -> None:
    data = export_metadata(resolve(load_workflow_text(WORKFLOW)))
    json.dumps(data)  # plain JSON all the way down
    WorkflowMetadata.model_validate(data)
    aiw = data["AIW"]
    assert aiw["Identifier"]["Specification"] == {
        "Standard": "MPAI-AIF",
        "AIW": "exported",
        "AIM": "",
        "Version": "2.0.1",
    }
    assert aiw["APIProfile"] == "Secure"
    assert aiw["Description"] == "For export."
    assert [s["Name"] for s in aiw["SubAIMs"]] == ["gen", "relay", "sink"]
    assert aiw["SubAIMs"][0]["Identifier"]["Specification"]["AIM"] == "tensor-source"
    assert aiw["Ports"] == [
        {
            "Name": "relay.in",
            "Direction": "InputOutput",
            "RecordType": "any",
            "Technology": "Software",
            "Protocol": "",
            "IsRemote": False,
        },
        {
            "Name": "relay.out",
            "Direction": "OutputInput",
            "RecordType": "any",
            "Technology": "Software",
            "Protocol": "",
            "IsRemote": False,
        },
    ]
    assert aiw["Topology"] == [
        {
            "Output": {"AIMName": "gen", "PortName": "out"},
            "Input": {"AIMName": "sink", "PortName": "in"},
        },
        {
            "Output": {"AIMName": "", "PortName": "relay.in"},
            "Input": {"AIMName": "relay", "PortName": "in"},
        },
        {
            "Output": {"AIMName": "relay", "PortName": "out"},
            "Input": {"AIMName": "", "PortName": "relay.out"},
        },
    ]


def test_export_metadata_of_each_aim() -> None:
    aims = export_metadata(resolve(load_workflow_text(WORKFLOW)))["AIMs"]
    assert list(aims) == ["gen", "relay", "sink"]
    gen = aims["gen"]
    assert gen["APIProfile"] == "Secure"
    assert gen["Ports"][0]["RecordType"] == "tensor<float32>"
    assert gen["Implementations"] == [
        {
            "BinaryName": "aif.aims.builtin:TensorSource",
            "Architecture": "any",
            "OperatingSystem": "any",
            "Version": "1.0.0",
            "Source": "AIMStorage",
            "Destination": "",
        },
    ]
    assert gen["ResourcePolicies"] == [
        {"Name": "aif:Placement", "Request": "process"},
        {"Name": "aif:HeartbeatTimeout", "Request": 3.5},
    ]
    assert all(p["IsRemote"] for p in aims["relay"]["Ports"])
    assert not any(p["IsRemote"] for p in aims["sink"]["Ports"])


def test_a_ray_aims_resources_export_as_resource_policies() -> None:
    text = Path(__file__).parents[1].joinpath("workflows", "valid-ray.yml").read_text()
    gen = export_metadata(resolve(load_workflow_text(text)))["AIMs"]["gen"]
    assert gen["ResourcePolicies"] == [
        {"Name": "aif:Placement", "Request": "ray"},
        {"Name": "CPU:Number", "Request": 1.0},
        {"Name": "GPU:Number", "Request": 0.0},
        {"Name": "Memory", "Request": 1073741824},
        {"Name": "aif:Resource:imc", "Request": 1.0},
    ]
