"""MPAI-AIF AIW/AIM metadata (V2) as pydantic models, with the standard's field names.

The attribute names are the JSON keys of the standard (``Identifier``, ``Ports``,
``RecordType``...), so ``model_dump(mode="json")`` *is* the standard's JSON and there is
no alias table to drift. One model serves AIMs and AIWs alike, as in the standard: an
AIW is a composite AIM whose ``SubAIMs`` and ``Topology`` are filled in.

Spellings taken from the standard and its published examples:

* ``Direction``: ``"InputOutput"`` for an input port (data flows from outside into the
  AIM) and ``"OutputInput"`` for an output port.
* ``Technology``: ``"Software"`` | ``"Hardware"``; ``APIProfile``: ``"Basic"`` | ``"Secure"``.
* ``Implementations[].Source``: ``"AIMStorage"`` | ``"MPAIStore"``.
* ``Documentation[].Type``: ``"Specification"`` | ``"Manual"`` | ``"Tutorial"`` | ``"Video"``.

aif additions, within the standard's shape: ``ResourcePolicies`` entries named
``aif:Placement``, ``aif:Restart`` and ``aif:HeartbeatTimeout`` carry the workflow's
placement and supervision settings; in an AIW's ``Topology`` the AIW's own ports (the
records the controller feeds and collects) appear with ``AIMName`` ``""``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aif.communication.types import RecordType, parse_type
from aif.errors import PortTypeError

if TYPE_CHECKING:
    from aif.aims.base import AIM

#: Value of ``Specification.Standard`` for everything aif writes.
STANDARD = "MPAI-AIF"
Direction = Literal["InputOutput", "OutputInput"]
Technology = Literal["Software", "Hardware"]
APIProfile = Literal["Basic", "Secure"]

#: ``Direction`` of an input port, as the standard spells it.
INPUT: Direction = "InputOutput"
#: ``Direction`` of an output port, as the standard spells it.
OUTPUT: Direction = "OutputInput"


class _Meta(BaseModel):
    """Base of the metadata models: unknown keys are errors, so typos do not pass."""

    model_config = ConfigDict(extra="forbid")


class Specification(_Meta):
    """Which standard AIW/AIM this implements (``Identifier.Specification``)."""

    Standard: str = STANDARD
    AIW: str = ""
    AIM: str = ""
    Version: str = "1.0.0"
    Profile: str | None = None


class Identifier(_Meta):
    """Who implemented what (``Identifier``)."""

    ImplementerID: str
    Specification: Specification


class TypeDef(_Meta):
    """A named record type (``Types[]``), usable by name in ``Ports[].RecordType``."""

    Name: str = Field(min_length=1)
    Type: str = Field(min_length=1)


class Port(_Meta):
    """A port of an AIM or AIW (``Ports[]``)."""

    Name: str = Field(min_length=1)
    Direction: Direction
    RecordType: str = Field(min_length=1)
    Technology: Technology = "Software"
    Protocol: str = ""
    IsRemote: bool = False


class PortID(_Meta):
    """One end of a channel: an AIM (``""`` for the AIW itself) and its port."""

    AIMName: str
    PortName: str


class Channel(_Meta):
    """A ``Topology[]`` entry: records flow from ``Output`` to ``Input``."""

    Output: PortID
    Input: PortID


class SubAIM(_Meta):
    """A ``SubAIMs[]`` entry: an instance name and what it is."""

    Name: str = Field(min_length=1)
    Identifier: Identifier


class Implementation(_Meta):
    """An ``Implementations[]`` entry; ``BinaryName`` is the Python class path here."""

    BinaryName: str
    Architecture: str = "any"
    OperatingSystem: str = "any"
    Version: str = "1.0.0"
    Source: Literal["AIMStorage", "MPAIStore"] = "AIMStorage"
    Destination: str = ""


class ResourcePolicy(_Meta):
    """A ``ResourcePolicies[]`` entry (``Memory``, ``CPU:Number``, ``aif:Placement``...)."""

    Name: str = Field(min_length=1)
    Minimum: int | float | str | None = None
    Maximum: int | float | str | None = None
    Request: int | float | str | None = None


class DocumentationRef(_Meta):
    """A ``Documentation[]`` entry."""

    Type: Literal["Specification", "Manual", "Tutorial", "Video"]
    URI: str


class AIMMetadata(_Meta):
    """AIW/AIM metadata. For a plain AIM, ``SubAIMs`` and ``Topology`` stay empty."""

    Identifier: Identifier
    APIProfile: APIProfile = "Basic"
    Description: str = ""
    Types: list[TypeDef] = Field(default_factory=list)
    Ports: list[Port] = Field(default_factory=list)
    SubAIMs: list[SubAIM] = Field(default_factory=list)
    Topology: list[Channel] = Field(default_factory=list)
    Implementations: list[Implementation] = Field(default_factory=list)
    ResourcePolicies: list[ResourcePolicy] = Field(default_factory=list)
    Documentation: list[DocumentationRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> AIMMetadata:
        named: dict[str, RecordType] = {}
        for index, typedef in enumerate(self.Types):
            named[typedef.Name] = _parse(typedef.Type, named, f"Types[{index}].Type")
        names: set[str] = set()
        for index, port in enumerate(self.Ports):
            if port.Name in names:
                raise ValueError(f"Ports[{index}]: duplicate port name {port.Name!r}")
            names.add(port.Name)
            _parse(port.RecordType, named, f"Ports[{index}].RecordType")
        sub_names = [sub.Name for sub in self.SubAIMs]
        if len(set(sub_names)) != len(sub_names):
            raise ValueError(f"SubAIMs: names must be unique, got {sub_names}")
        known = {"", *sub_names}
        for index, channel in enumerate(self.Topology):
            for end in (channel.Output, channel.Input):
                if end.AIMName not in known:
                    raise ValueError(
                        f"Topology[{index}]: AIMName {end.AIMName!r} is not a SubAIM "
                        f"(SubAIMs: {', '.join(sub_names) or 'none'}; '' is the AIW itself)"
                    )
        return self


#: An AIW's metadata has the same shape as an AIM's (an AIW is a composite AIM).
AIWMetadata = AIMMetadata


def _parse(text: str, named: dict[str, RecordType], where: str) -> RecordType:
    if text in named:
        return named[text]
    try:
        return parse_type(text, named)
    except PortTypeError as exc:
        raise ValueError(f"{where}: {str(exc).splitlines()[0]}") from exc


def aim_ports(cls: type[AIM], *, is_remote: bool = False) -> list[Port]:
    """The ``Ports`` of an AIM class: inputs then outputs, type strings as declared."""
    hardware = getattr(cls, "technology", "Software") == "Hardware"
    technology: Technology = "Hardware" if hardware else "Software"
    ports = [
        Port(Name=name, Direction=INPUT, RecordType=text, Technology=technology, IsRemote=is_remote)
        for name, text in cls.inputs.items()
    ]
    ports += [
        Port(
            Name=name, Direction=OUTPUT, RecordType=text, Technology=technology, IsRemote=is_remote
        )
        for name, text in cls.outputs.items()
    ]
    return ports


def aim_identifier(cls: type[AIM], name: str, aiw: str = "") -> Identifier:
    """``Identifier`` of an AIM class known as ``name`` (its type), inside AIW ``aiw``."""
    return Identifier(
        ImplementerID=cls.implementer,
        Specification=Specification(AIW=aiw, AIM=name, Version=cls.version),
    )


def aim_metadata(cls: type[AIM], name: str, *, aiw: str = "") -> AIMMetadata:
    """MPAI-AIF metadata of AIM class ``cls``, named ``name`` (its workflow ``type``)."""
    return AIMMetadata(
        Identifier=aim_identifier(cls, name, aiw),
        Description=cls.description(),
        Ports=aim_ports(cls),
        Implementations=[Implementation(BinaryName=cls.class_path(), Version=cls.version)],
    )
