"""The User API (MPAI_AIFU_*) and the Controller-to-Controller API on the wire.

One msgpack map per ZeroMQ message on a DEALER (client) ↔ ROUTER (daemon) pair, the
same framing as the AIM API, so a script in any language can drive a daemon::

    client                                   daemon
      │ {op: submit, rid: 7, text: …} ──────►│
      │◄── {rid: 7, ok: true, result: {…}}   │
      │ {op: cancel, rid: 8, job: "x"} ─────►│
      │◄── {rid: 8, ok: false, error: {type: JobNotFound, message: …}}

Every request is a pydantic model here, so a malformed one is refused with the field
that is wrong (and the daemon goes on). Every field is bounded (a request of more than
:data:`MAX_REQUEST` bytes is refused before it is decoded, a list has a longest length,
an error names at most :data:`MAX_PROBLEMS` wrong fields), so no request costs the
daemon more than a bounded amount of work to refuse.

Over tcp in the basic profile a daemon asks each request for its token (the key
:data:`TOKEN_KEY` of the map, beside ``op`` and ``rid``; see ``aif.daemon.server``);
ipc and CURVE (secure profile) requests carry none. Errors travel as the name of an ``aif.errors``
class plus its message; the client turns the name back into that class through a fixed
table, never by evaluating anything it received (:mod:`aif.api.wire`, which a client
that only sends requests and reads replies loads without these models). ``peer.*`` ops are the
Controller-to-Controller API: another controller asks this one to host AIMs for it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgpack
import pydantic

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

#: Largest User API request, in bytes: a workflow of ``MAX_WORKFLOW_CHARS`` characters
#: (up to 4 bytes each in UTF-8) and room for the rest. Larger ones are refused unread.
MAX_REQUEST = 5 * 2**20
#: Longest workflow text a ``submit`` carries, in characters (the YAML loader's own
#: limit, ``aif.inputs.safe_yaml.MAX_TEXT_CHARS``).
MAX_WORKFLOW_CHARS = 2**20
#: Most wrong fields one error reply names (the rest are counted).
MAX_PROBLEMS = 10
#: The request key that carries the tcp User API's token (basic profile).
TOKEN_KEY = "token"
#: A path or similar short text in a request.
_PATH = 4096
#: Largest count or sequence number a request carries: SQLite's largest INTEGER, which
#: the job store compares it with (a larger one would fail there, not here).
_MAX_COUNT = 2**63 - 1


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("a path cannot hold a NUL byte")
    return text


#: A file or folder path in a request: no OS call can take one with a NUL byte.
_Path = Annotated[str, pydantic.Field(max_length=_PATH), pydantic.AfterValidator(_no_nul)]


class _Request(pydantic.BaseModel):
    model_config = _STRICT
    #: The request id the reply echoes: an int (not a bool, str or float, which would come
    #: back as another value than the client sent) that msgpack can send back.
    rid: int = pydantic.Field(default=0, strict=True, ge=-(2**63), le=2**64 - 1)


class Ping(_Request):
    """Is the daemon there? Returns its pid, version, endpoints and job counts."""

    op: Literal["ping"] = "ping"


class Submit(_Request):
    """Queue one AIW instance (``MPAI_AIFU_AIW_Start`` when it gets an instance)."""

    op: Literal["submit"] = "submit"
    text: str = pydantic.Field(max_length=MAX_WORKFLOW_CHARS)
    source: _Path
    overrides: list[Annotated[str, pydantic.Field(max_length=64 * 2**10)]] = pydantic.Field(
        default_factory=list, max_length=1000
    )
    base_dir: _Path
    work_dir: _Path
    priority: int = pydantic.Field(default=0, ge=-1000, le=1000)
    hold: bool = False


class ListJobs(_Request):
    """The jobs, oldest first; by default the unfinished ones and the last 20 finished."""

    op: Literal["list"] = "list"
    states: list[Annotated[str, pydantic.Field(max_length=32)]] | None = pydantic.Field(
        default=None, max_length=32
    )
    limit: int | None = pydantic.Field(default=None, ge=1, le=_MAX_COUNT)


class _JobRequest(_Request):
    job: str = pydantic.Field(min_length=1, max_length=200)


class Status(_JobRequest):
    """One job: its record, why it waits, and its AIMs while it runs."""

    op: Literal["status"] = "status"


class Logs(_JobRequest):
    """A job's events after sequence number ``after`` (``aif logs --follow`` polls)."""

    op: Literal["logs"] = "logs"
    after: int = pydantic.Field(default=0, ge=0, le=_MAX_COUNT)
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


def unpack_request(frame: bytes) -> Any:
    """Decode one request frame; one over :data:`MAX_REQUEST` bytes is refused unread."""
    if len(frame) > MAX_REQUEST:
        raise MalformedMessage(
            f"User API request of {len(frame)} bytes exceeds {MAX_REQUEST}; a workflow may "
            f"have at most {MAX_WORKFLOW_CHARS} characters"
        )
    return unpack(frame)


def peer_token(address: str) -> str | None:
    """The token to send a basic-profile peer controller at tcp ``address`` (C2C):
    ``$AIF_PEER_TOKENS`` (``tcp://HOST:PORT=TOKEN``, comma-separated), else ``$AIF_TOKEN``."""
    import os

    for item in os.environ.get("AIF_PEER_TOKENS", "").split(","):
        peer, sep, token = item.strip().partition("=")
        if sep and peer == address and token:
            return token
    return os.environ.get("AIF_TOKEN") or None


def take_token(data: object) -> object:
    """Remove and return the request's token (None if it has none)."""
    return data.pop(TOKEN_KEY, None) if isinstance(data, dict) else None


def validate_request(data: object) -> Request:
    """A decoded request as its model; ``MalformedMessage`` names the wrong fields (at
    most :data:`MAX_PROBLEMS` of them, each cut short)."""
    try:
        request: Request = _request_adapter.validate_python(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])[:200] or '<message>'}: {err['msg'][:300]}"
            for err in errors[:MAX_PROBLEMS]
        ]
        if len(errors) > MAX_PROBLEMS:
            problems.append(f"and {len(errors) - MAX_PROBLEMS} more")
        raise MalformedMessage(f"invalid User API request: {'; '.join(problems)}") from exc
    return request


def parse_request(frame: bytes) -> Request:
    """Decode and validate a request; ``MalformedMessage`` names the wrong fields."""
    data = unpack_request(frame)
    take_token(data)
    return validate_request(data)


def request_id(frame: bytes) -> int:
    """The ``rid`` of a request that failed to parse, so its error reply still matches."""
    try:
        data = unpack_request(frame)
    except MalformedMessage:
        return peek_rid(frame)
    return rid_of(data)


def peek_rid(frame: bytes, window: int = 1024) -> int:
    """The ``rid`` of a request read from its first ``window`` bytes only (0 if it is not
    there): what an oversized request is answered with, unread. Clients put ``op`` and
    ``rid`` first."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=window)
    unpacker.feed(frame[:window])
    try:
        for _ in range(min(unpacker.read_map_header(), 8)):
            key = unpacker.unpack()
            value = unpacker.unpack()
            if key == "rid":
                return rid_of({"rid": value})
    except Exception:  # out of data, not a map, a value too long to peek past: no rid
        return 0
    return 0


def rid_of(data: object) -> int:
    """The ``rid`` of a decoded request, whatever else is wrong with it (0 if none)."""
    rid = data.get("rid") if isinstance(data, dict) else None
    return rid if type(rid) is int and -(2**63) <= rid < 2**64 else 0
