"""The User API (MPAI_AIFU_*) and the Controller-to-Controller API on the wire.

One msgpack map per ZeroMQ message on a DEALER (client) ↔ ROUTER (daemon) pair, the
same framing as the AIM API, so a script in any language can drive a daemon::

    client                                   daemon
      │ {op: submit, rid: 7, text: …} ──────►│
      │◄── {rid: 7, ok: true, result: {…}}   │
      │ {op: cancel, rid: 8, job: "x"} ─────►│
      │◄── {rid: 8, ok: false, error: {type: JobNotFound, message: …}}

Every request is a pydantic model here, so a malformed one is refused with the field
that is wrong (and the daemon goes on). Errors travel as the name of an ``aif.errors``
class plus its message; the client turns the name back into that class through a fixed
table, never by evaluating anything it received (:mod:`aif.api.wire`, which a client
that only sends requests and reads replies loads without these models). ``peer.*`` ops are the
Controller-to-Controller API: another controller asks this one to host AIMs for it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from aif.api.aim import validate_api_message
from aif.api.wire import (
    error_reply as error_reply,
)
from aif.api.wire import (
    ok_reply as ok_reply,
)
from aif.api.wire import (
    pack_map,
    unpack_api_message,
)
from aif.api.wire import (
    reply_result as reply_result,
)
from aif.errors import MalformedMessage

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)


class _Request(pydantic.BaseModel):
    model_config = _STRICT
    rid: int = 0


class Ping(_Request):
    """Is the daemon there? Returns its pid, version, endpoints and job counts."""

    op: Literal["ping"] = "ping"


class Submit(_Request):
    """Queue one AIW instance (``MPAI_AIFU_AIW_Start`` when it gets an instance)."""

    op: Literal["submit"] = "submit"
    text: str = pydantic.Field(max_length=4 * 2**20)
    source: str
    overrides: list[str] = pydantic.Field(default_factory=list)
    base_dir: str
    work_dir: str
    priority: int = pydantic.Field(default=0, ge=-1000, le=1000)
    hold: bool = False


class ListJobs(_Request):
    """The jobs, oldest first; by default the unfinished ones and the last 20 finished."""

    op: Literal["list"] = "list"
    states: list[str] | None = None
    limit: int | None = pydantic.Field(default=None, ge=1)


class _JobRequest(_Request):
    job: str = pydantic.Field(min_length=1, max_length=200)


class Status(_JobRequest):
    """One job: its record, why it waits, and its AIMs while it runs."""

    op: Literal["status"] = "status"


class Logs(_JobRequest):
    """A job's events after sequence number ``after`` (``aif logs --follow`` polls)."""

    op: Literal["logs"] = "logs"
    after: int = pydantic.Field(default=0, ge=0)
    limit: int = pydantic.Field(default=1000, ge=1, le=10_000)


class Suspend(_JobRequest):
    """Pause a running job (``MPAI_AIFU_AIW_Pause``) or hold a queued one."""

    op: Literal["suspend"] = "suspend"


class Resume(_JobRequest):
    """Continue a suspended job (``MPAI_AIFU_AIW_Resume``) or release a held one."""

    op: Literal["resume"] = "resume"


class Cancel(_JobRequest):
    """Stop a job (``MPAI_AIFU_AIW_Stop``); a queued job never starts."""

    op: Literal["cancel"] = "cancel"


class AIMs(_Request):
    """The daemon's instances (queue, capabilities, load) and the AIMs running now."""

    op: Literal["aims"] = "aims"


class Shutdown(_Request):
    """Drain and exit, as SIGTERM does."""

    op: Literal["shutdown"] = "shutdown"


class Attest(_Request):
    """A report of this controller and its loaded AIMs, signed with its identity key.

    ``nonce`` is the verifier's fresh challenge, echoed in the signed report so an old
    report cannot be replayed (16 to 128 hex digits).
    """

    op: Literal["attest"] = "attest"
    nonce: str = pydantic.Field(pattern=r"^[0-9a-fA-F]{16,128}$")


class PeerOffer(_Request):
    """C2C: which AIM types this controller hosts for others, and its load."""

    op: Literal["peer.offer"] = "peer.offer"


class PeerHost(_Request):
    """C2C: start a host for AIM ``name`` of run ``workflow`` that registers at ``controller``."""

    op: Literal["peer.host"] = "peer.host"
    type: str = pydantic.Field(min_length=1, max_length=500)
    name: str = pydantic.Field(pattern=r"^[a-z][a-z0-9_-]*$")
    workflow: str = pydantic.Field(min_length=1, max_length=200)
    controller: str = pydantic.Field(pattern=r"^tcp://")
    origin: str = ""
    #: Secure profile: the asking controller's CURVE key (``curve:KEY``), which its AIM API
    #: serves with; the host dials it as a CURVE client with this controller's identity.
    server_key: str | None = pydantic.Field(default=None, pattern=r"^curve:[!-~]{40}$")


class PeerRelease(_Request):
    """C2C: the run ``workflow`` ended on the asking controller; end its hosts here."""

    op: Literal["peer.release"] = "peer.release"
    workflow: str = pydantic.Field(min_length=1, max_length=200)


Request = Annotated[
    Ping
    | Submit
    | ListJobs
    | Status
    | Logs
    | Suspend
    | Resume
    | Cancel
    | AIMs
    | Shutdown
    | Attest
    | PeerOffer
    | PeerHost
    | PeerRelease,
    pydantic.Field(discriminator="op"),
]

_request_adapter: pydantic.TypeAdapter[Request] = pydantic.TypeAdapter(Request)


def pack(message: dict[str, Any] | pydantic.BaseModel) -> bytes:
    """Encode one request or reply."""
    data = message.model_dump(mode="json") if isinstance(message, pydantic.BaseModel) else message
    return pack_map(data)


def unpack(frame: bytes) -> Any:
    """Decode one frame (raises ``MalformedMessage``)."""
    return unpack_api_message(frame, "User API")


def parse_request(frame: bytes) -> Request:
    """Decode and validate a request; ``MalformedMessage`` names every wrong field."""
    request: Request = validate_api_message(_request_adapter, unpack(frame), "User API request")
    return request


def request_id(frame: bytes) -> int:
    """The ``rid`` of a request that failed to parse, so its error reply still matches."""
    try:
        data = unpack(frame)
    except MalformedMessage:
        return 0
    rid = data.get("rid") if isinstance(data, dict) else None
    return rid if isinstance(rid, int) else 0
