"""Properties of the User API's decoding: whatever a client sends (any bytes, any msgpack
map with any op, field types, nesting, huge ints, bytes, a ``rid`` of any type), it is
a request model or refused with ``MalformedMessage``, never another exception; the
``rid`` an error reply carries is always an int msgpack can send back; and every
request that validates can be answered on the wire (its ``rid`` and fields fit)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aif.api import user as user_api
from aif.api.wire import pack_map, unpack_api_message
from aif.errors import MalformedMessage

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

OPS = [
    *("ping", "submit", "list", "status", "logs", "suspend", "resume", "cancel", "aims"),
    *("shutdown", "attest", "peer.offer", "peer.host", "peer.release"),
]
FIELDS = [
    *("op", "rid", "token", "text", "source", "overrides", "base_dir", "work_dir"),
    *("priority", "hold", "states", "limit", "job", "after", "nonce", "type", "name"),
    *("workflow", "controller", "origin", "server_key"),
]
U64 = 2**64 - 1
I64 = -(2**63)
#: Integers at the edges that lower layers (SQLite, msgpack, C) trip on.
EDGE_INTS = [0, 1, -1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**63 + 1, U64 - 1, U64, I64]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(I64, U64),
    st.sampled_from(EDGE_INTS),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "a\x00b", "%", "_", "*", "..", "/", "tcp://h:1", "queued"]),
    st.binary(max_size=30),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=10,
)


#: Values of the right type for a field (ints at the edges, short texts, lists of them),
#: so that requests get past validation into the handlers, mixed with junk of any type.
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-3, 3), st.integers(I64, U64))
texts = st.one_of(st.sampled_from(["", "\x00", "a\x00b", "%", "_", "..", "/"]), st.text())
#: ``w`` begins the id of the job the daemon fuzz test holds.
job_ids = st.one_of(st.just("w"), texts)
field_values = st.one_of(ints, texts, st.lists(texts, max_size=3), st.booleans(), values)


@st.composite
def requests(draw: st.DrawFn, ops: list[str] = OPS, junk_ops: bool = True) -> dict[str, Any]:
    """A map that looks like a request: a known or unknown op, known or unknown fields."""
    op = st.one_of(st.sampled_from(ops), values) if junk_ops else st.sampled_from(ops)
    message: dict[str, Any] = {"op": draw(op)}
    if draw(st.booleans()):
        message["rid"] = draw(field_values)
    keys = st.one_of(st.sampled_from(FIELDS[1:]), st.text(max_size=8))
    for key in draw(st.lists(keys, max_size=4, unique=True)):
        message[key] = draw(field_values)
    return message


#: What each op's fields hold when right, at their edges, so requests reach the handlers.
states = st.sampled_from(["queued", "held", "running", "suspended", "done", "failed", "x"])
NEAR_VALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "ping": {},
    "aims": {},
    "peer.offer": {},
    "submit": {
        "text": st.one_of(st.sampled_from(["name: w\naims: {}\n", "[", "name: w"]), texts),
        "source": texts,
        "overrides": st.lists(st.one_of(texts, st.just("name=x")), max_size=2),
        "base_dir": texts,
        "work_dir": texts,
        "priority": st.integers(-1000, 1000),
        "hold": st.just(True),
    },
    "list": {"states": st.none() | st.lists(states, max_size=3), "limit": st.none() | ints},
    "status": {"job": job_ids},
    "suspend": {"job": job_ids},
    "resume": {"job": job_ids},
    "cancel": {"job": job_ids},
    "logs": {"job": job_ids, "after": ints, "limit": st.integers(1, 10_000)},
    "attest": {"nonce": st.one_of(st.from_regex(r"[0-9a-f]{16,128}", fullmatch=True), texts)},
    "peer.release": {"workflow": texts},
}


@st.composite
def near_valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request of a real op (not shutdown) with right fields, maybe one of them junk."""
    op = draw(st.sampled_from(sorted(NEAR_VALID)))
    message: dict[str, Any] = {"op": op, "rid": draw(st.integers(I64, U64))}
    for key, strategy in NEAR_VALID[op].items():
        message[key] = draw(strategy)
    if draw(st.integers(0, 3)) == 0:
        message[draw(st.sampled_from(FIELDS[1:]))] = draw(field_values)
    return message


frames = st.one_of(
    near_valid_requests().map(pack_map),
    requests().map(pack_map),
    st.binary(max_size=200),
    values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    # maps with keys msgpack refuses (strict_map_key) and ext types
    st.just(b"\x81\x01\x02"),
    st.just(b"\x81\xa2op\xd4\x05\x00"),
    st.just(b"\x81\xa3rid\xd6\xff\x00\x00\x00\x01"),
)


@FUZZ
@given(frame=frames)
def test_any_frame_is_a_request_or_malformed(frame: bytes) -> None:
    try:
        request = user_api.parse_request(frame)
    except MalformedMessage as exc:
        assert str(exc).startswith(("invalid User API request", "User API message"))
    else:
        # the reply to it can be sent: its rid and an echo of its fields pack
        pack_map(user_api.ok_reply(request.rid, request.model_dump(mode="json")))
    rid = user_api.request_id(frame)
    assert type(rid) is int and I64 <= rid <= U64
    pack_map(user_api.error_reply(rid, MalformedMessage("x")))


#: Requests of ops without required fields, with a rid of any type.
rid_requests = st.fixed_dictionaries(
    {"op": st.sampled_from(["ping", "aims", "peer.offer"]), "rid": values}
)


@FUZZ
@given(message=st.one_of(requests(), rid_requests))
def test_any_map_validates_or_is_malformed(message: dict[str, Any]) -> None:
    data = unpack_api_message(pack_map(message), "User API")
    try:
        request = user_api.validate_request(data)
    except MalformedMessage as exc:
        assert len(str(exc)) < 8000
        return
    assert request.op == message["op"]
    rid = message.get("rid", 0)
    assert type(rid) is int and request.rid == rid  # no rid coerced from a str or a float


@FUZZ
@given(frame=st.binary(max_size=64))
def test_peek_rid_of_any_bytes_is_an_int(frame: bytes) -> None:
    rid = user_api.peek_rid(frame)
    assert type(rid) is int and I64 <= rid <= U64


def test_regressions_found_by_these_properties() -> None:
    """A bool, float or str ``rid`` came back as another value than the client sent; a
    ``limit`` or ``after`` over SQLite's INTEGER failed inside the daemon with a traceback
    ("internal error"); a path with a NUL byte was queued, to fail when the job ran."""
    for rid in (True, 1.0, "5"):
        with pytest.raises(MalformedMessage, match="rid"):
            user_api.validate_request({"op": "ping", "rid": rid})
    with pytest.raises(MalformedMessage, match=r"list\.limit: Input should be less than or equal"):
        user_api.validate_request({"op": "list", "limit": 2**63})
    with pytest.raises(MalformedMessage, match=r"logs\.after: Input should be less than or equal"):
        user_api.validate_request({"op": "logs", "job": "j", "after": U64})
    submit = {"op": "submit", "text": "x", "source": "s", "base_dir": "/", "work_dir": "/"}
    for field in ("source", "base_dir", "work_dir"):
        with pytest.raises(MalformedMessage, match=rf"submit\.{field}: .*cannot hold a NUL byte"):
            user_api.validate_request({**submit, field: "a\x00b"})
    assert user_api.validate_request({"op": "ping", "rid": U64}).rid == U64
