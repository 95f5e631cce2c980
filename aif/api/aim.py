"""The AIM API: messages between an AIM host and the controller (MPAI_AIFM_*).

One msgpack map per ZeroMQ message, on a DEALER (host) ↔ ROUTER (controller) pair.
Because it is plain msgpack, an AIM host may be written in any language. Every
message has an ``op``; each op is a pydantic model here, so a malformed message is
refused with the field that is wrong and never reaches the controller's logic::

    host                         controller
     │ hello{aim, workflow, pid, …} ─────►│   (a remote host adds type and host)
     │◄─ setup{type, params, transports…} │
     │ ready{inputs, control} ───────────►│   (readers bound, AIM.setup() done)
     │◄─ wire{outputs, writers}           │   (once every AIM of the AIW is ready)
     │ wired ────────────────────────────►│
     │◄─ start                            │
     │ heartbeat / state / event ────────►│   (while running)
     │ done | failed{error} ─────────────►│
     │ bye{reason} ──────────────────────►│   (deregister)

Lifecycle signals (suspend, resume, stop, abort) do not use this socket: the
controller sends them as uint16 codes on the high-priority lane of each AIM's control
channel, so they overtake any backlog.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgpack
import pydantic

from aif.api.wire import MAX_API_MESSAGE as MAX_API_MESSAGE
from aif.api.wire import unpack_api_message as unpack_api_message
from aif.errors import MalformedMessage

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)

Transport = Literal["inproc", "ipc", "tcp"]
#: Event topics an AIM may publish (the controller adds ``state``).
EventTopic = Literal["progress", "log", "result"]


class Endpoints(pydantic.BaseModel):
    """The two lanes of one channel reader."""

    model_config = _STRICT
    normal: str
    high: str


class Hello(pydantic.BaseModel):
    """A host introduces itself.

    A remote host sets ``type`` to the class it brings (``package.module:Class``, or the
    workflow's type name for a host not written in Python) and ``host`` to its machine's
    name, so the controller can check the one and name the other in its messages.
    """

    model_config = _STRICT
    op: Literal["hello"] = "hello"
    aim: str
    workflow: str | None = None
    pid: int
    type: str | None = None
    host: str | None = None


class Ready(pydantic.BaseModel):
    """The AIM is set up and its input readers are bound at these endpoints.

    ``capabilities`` is what the AIM declared it can do, measured where it runs (a
    simulator's devices and RPU config families); the controller hands it to the AIMs
    that send to this one, so they can route work to an instance that can do it.
    """

    model_config = _STRICT
    op: Literal["ready"] = "ready"
    aim: str
    inputs: dict[str, Endpoints]
    control: Endpoints
    capabilities: dict[str, Any] = pydantic.Field(default_factory=dict)


class Wired(pydantic.BaseModel):
    """Output writers are connected."""

    model_config = _STRICT
    op: Literal["wired"] = "wired"
    aim: str


class Heartbeat(pydantic.BaseModel):
    """The host is alive.

    A host sends heartbeats from a thread of its own, so a busy event loop does not
    stop them. While its event loop is blocked (``stalled`` seconds since it last
    ran) the host says so and adds ``cpu``, the CPU seconds its process has used
    (every thread), so the controller can tell an AIM that computes from one that
    hangs. Both fields are optional and only sent while the loop is blocked: a
    controller that predates them drops those beats, as it heard none before.
    """

    model_config = _STRICT
    op: Literal["heartbeat"] = "heartbeat"
    aim: str
    stalled: float | None = pydantic.Field(default=None, ge=0)
    cpu: float | None = pydantic.Field(default=None, ge=0)


class StateChange(pydantic.BaseModel):
    """The AIM moved to a new lifecycle state."""

    model_config = _STRICT
    op: Literal["state"] = "state"
    aim: str
    state: Literal["running", "suspended", "stopping"]
    detail: str = ""


class EventMessage(pydantic.BaseModel):
    """Progress, log or result data the AIM publishes."""

    model_config = _STRICT
    op: Literal["event"] = "event"
    aim: str
    topic: EventTopic
    data: dict[str, Any]


class Done(pydantic.BaseModel):
    """``run`` returned and the outputs are closed."""

    model_config = _STRICT
    op: Literal["done"] = "done"
    aim: str


class Failed(pydantic.BaseModel):
    """The AIM raised; ``error`` says what and where."""

    model_config = _STRICT
    op: Literal["failed"] = "failed"
    aim: str
    error: str


class Bye(pydantic.BaseModel):
    """The host deregisters and is about to exit."""

    model_config = _STRICT
    op: Literal["bye"] = "bye"
    aim: str
    reason: str = ""


HostMessage = Annotated[
    Hello | Ready | Wired | Heartbeat | StateChange | EventMessage | Done | Failed | Bye,
    pydantic.Field(discriminator="op"),
]


class StorageGrant(pydantic.BaseModel):
    """Secure profile: the keys of the AIM's own storage and of Global Storage.

    Each maps a key generation (decimal text) to the 32-byte key, base64. The
    controller derives them (X25519 + HKDF, ``aif.security.exchange``) and hands each
    AIM only its own scope, so one AIM cannot read another's storage. They travel on
    the AIM API, which is inproc or ipc on one host, or CURVE-encrypted tcp.
    """

    model_config = _STRICT
    aim: dict[str, str]
    shared: dict[str, str]

    @classmethod
    def of(cls, aim: Mapping[int, bytes], shared: Mapping[int, bytes]) -> StorageGrant:
        """The grant of an AIM's own keys and Global Storage's, by generation."""
        return cls(aim=_encoded(aim), shared=_encoded(shared))

    def aim_keys(self) -> dict[int, bytes]:
        """The AIM's own storage keys, generation -> 32-byte key."""
        return _decoded(self.aim)

    def shared_keys(self) -> dict[int, bytes]:
        """Global Storage's keys, generation -> 32-byte key."""
        return _decoded(self.shared)


def _encoded(keys: Mapping[int, bytes]) -> dict[str, str]:
    return {str(gen): base64.b64encode(key).decode("ascii") for gen, key in keys.items()}


def _decoded(keys: Mapping[str, str]) -> dict[int, bytes]:
    return {int(gen): base64.b64decode(key) for gen, key in keys.items()}


class ChannelKeys(pydantic.BaseModel):
    """Secure profile: the run's CURVE key pair (Z85 text) for its tcp channels.

    Every AIM of the run binds its tcp readers as a CURVE server with this pair and
    connects its writers as a CURVE client with it; a reader's ZAP ``domain`` allows
    only this public key, so only the run's own AIMs can reach its channels.
    """

    model_config = _STRICT
    public: str
    secret: str
    domain: str


class Setup(pydantic.BaseModel):
    """What the host needs to instantiate the AIM and bind its inputs."""

    model_config = _STRICT
    op: Literal["setup"] = "setup"
    type: str
    params: dict[str, Any]
    workflow: str
    state_dir: str
    ipc_dir: str
    transports: dict[str, Transport]
    control_transport: Transport
    queue_sizes: dict[str, int]
    max_message_sizes: dict[str, int]
    heartbeat_interval: float
    #: Folder that relative paths in ``params`` are read from (the workflow file's).
    base_dir: str = "."
    #: The folder of whoever started the run, where results for the user go ("" = the
    #: host's own working directory).
    work_dir: str = ""
    #: Interface ``tcp`` readers bind: the one the controller listens on, so that a
    #: remote writer on another machine can reach them. A remote host picks its own.
    tcp_host: str = "127.0.0.1"
    #: Secure profile: the AIM's storage keys (None: plain storage, the basic profile).
    storage: StorageGrant | None = None
    #: Secure profile: the run's CURVE keys for tcp channels (None: plain tcp).
    channel_keys: ChannelKeys | None = None


class Target(pydantic.BaseModel):
    """One connection from an output port to an input reader."""

    model_config = _STRICT
    endpoints: Endpoints
    target: str
    queue_size: int
    max_message_size: int
    #: The receiving AIM's declared capabilities (empty for the controller's collectors).
    capabilities: dict[str, Any] = pydantic.Field(default_factory=dict)


class Wire(pydantic.BaseModel):
    """Where each output port sends, and how many writers feed each input port."""

    model_config = _STRICT
    op: Literal["wire"] = "wire"
    outputs: dict[str, list[Target]]
    writers: dict[str, int]


class Start(pydantic.BaseModel):
    """Begin ``run``."""

    model_config = _STRICT
    op: Literal["start"] = "start"


class Terminate(pydantic.BaseModel):
    """Leave before start (another AIM failed, or the registration is refused)."""

    model_config = _STRICT
    op: Literal["terminate"] = "terminate"
    reason: str


ControllerMessage = Annotated[Setup | Wire | Start | Terminate, pydantic.Field(discriminator="op")]

_host_adapter: pydantic.TypeAdapter[HostMessage] = pydantic.TypeAdapter(HostMessage)
_controller_adapter: pydantic.TypeAdapter[ControllerMessage] = pydantic.TypeAdapter(
    ControllerMessage
)


def pack(message: pydantic.BaseModel) -> bytes:
    """Encode one API message."""
    packed: bytes = msgpack.packb(message.model_dump(mode="json"), use_bin_type=True)
    return packed


def validate_api_message(adapter: pydantic.TypeAdapter[Any], data: object, what: str) -> Any:
    """``data`` as the model ``adapter`` names; ``MalformedMessage`` lists every wrong field.

    ``what`` names the message in the error: ``AIM API message``, ``User API request``.
    """
    try:
        return adapter.validate_python(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<message>'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise MalformedMessage(f"invalid {what}: {problems}") from exc


def _validate(adapter: pydantic.TypeAdapter[Any], frame: bytes) -> Any:
    data = unpack_api_message(frame, hint="send payloads over channels, not the AIM API")
    return validate_api_message(adapter, data, "AIM API message")


def parse_host_message(frame: bytes) -> HostMessage:
    """Decode and validate a host → controller message (raises ``MalformedMessage``)."""
    result: HostMessage = _validate(_host_adapter, frame)
    return result


def parse_controller_message(frame: bytes) -> ControllerMessage:
    """Decode and validate a controller → host message (raises ``MalformedMessage``)."""
    result: ControllerMessage = _validate(_controller_adapter, frame)
    return result
