"""The aif wire format: how a value becomes ZeroMQ frames, and back.

This module is the only place that knows the layout. A message on a channel's
normal lane is one ZeroMQ multipart message::

    frame 0      header   msgpack map {"v": 1, "k": kind, "n": N}  (+ "m": {meta} when given)
    frame 1      body     msgpack of the value; every numpy ndarray / torch Tensor in it is
                          ExtType(1, msgpack [buffer_index, dtype_name, shape, "np" | "torch"])
    frame 2      buffer 0 raw bytes of the first array: C order, little-endian
    ...
    frame 1+N    buffer N-1

On an ``ipc`` channel an array of ``SHM_MIN_BYTES`` (1 MiB) or more travels through a
shared-memory segment instead of a buffer frame (``aif.communication.shm``); the body
then holds ``ExtType(2, msgpack [segment_name, nbytes, ticket, dtype_name, shape,
"np" | "torch"])`` and the header's ``n`` counts only the buffer frames. Only a decode
given the reader's segments accepts such a handle.

Buffers travel as their own frames so that large arrays are never copied into the
msgpack body: ``encode`` hands out a ``memoryview`` of the array's memory, the channel
sends it with ``copy=False`` and ``decode`` builds the array with ``np.frombuffer`` over
the received frame. A value that was sent is handed over: do not modify it afterwards
(over ``inproc://`` the receiver even sees the very same memory). The array side of
this, dtypes, byte views and torch conversion, lives in ``aif.communication.arrays``.

A signal on the high lane is a single frame of exactly 2 bytes, the code as a
little-endian uint16.

Values that cross: ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``
(``bytearray`` and ``memoryview`` arrive as ``bytes``), lists, tuples (arrive as lists),
dicts with ``str`` keys, numpy scalars (arrive as Python scalars), and numpy arrays and
torch tensors of the dtypes in ``DTYPES``. Anything else is refused with a ``WireError``
that names where it sits in the value. No pickle, ever: a frame from a peer is data.

``decode`` trusts nothing: every field of the header, every buffer reference and every
size is checked, msgpack runs with limits derived from the frame sizes, and any fault
becomes ``MalformedMessage``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgpack
import numpy as np

from aif.communication.arrays import (
    DTYPES,
    ArrayBuilder,
    SharedHandle,
    array_reference,
    no_ext,
    torch_tensor_type,
    unsupported,
)
from aif.communication.arrays import EXT_ARRAY as EXT_ARRAY  # part of the layout drawn above
from aif.errors import MalformedMessage, WireError

if TYPE_CHECKING:
    from aif.communication.shm import ReaderSegments, SegmentBatch

__all__ = [
    "DTYPES",
    "KIND_EOS",
    "KIND_RECORD",
    "MAX_DEPTH",
    "WIRE_VERSION",
    "Message",
    "decode",
    "decode_signal",
    "encode",
    "encode_signal",
    "message_size",
    "pack",
    "unpack",
]

WIRE_VERSION: Final = 1
KIND_RECORD: Final = "rec"
KIND_EOS: Final = "eos"
#: Deepest nesting of lists/dicts a value may have (msgpack's own limits are higher).
MAX_DEPTH: Final = 100
_MAX_KIND_LEN: Final = 32
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_LEAF: Final = frozenset({bytes, str, int, float, bool, type(None)})
_HEADER_KEYS: Final = frozenset({"v", "k", "n", "m"})


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded normal-lane message: its kind, its value and the header's meta map."""

    kind: str
    value: Any
    meta: dict[str, Any]


# --------------------------------------------------------------------------- checking


class _Refusal(Exception):
    """Raised inside the value walk; ``parts`` collects the path on the way out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.parts: list[str] = []


def _check(value: Any, depth: int, arrays: bool, tensor: type | None) -> None:
    """Refuse anything the wire does not carry; cheap for the common shapes of values."""
    t = type(value)
    if t in _LEAF:
        return
    if depth > MAX_DEPTH:
        raise _Refusal(f"nested deeper than {MAX_DEPTH} levels; flatten the value")
    if t is dict:
        _check_dict(value, depth, arrays, tensor)
    elif t is list or t is tuple:
        _check_items(value, depth, arrays, tensor)
    elif t is np.ndarray or (tensor is not None and isinstance(value, tensor)):
        _check_array(value, arrays)
    elif isinstance(value, (str, bytes, int, float, bytearray)):
        pass  # subclasses too: IntEnum, np.float64, np.str_ travel as their base type
    elif t is memoryview:
        if not value.c_contiguous:
            raise _Refusal("is a non-contiguous memoryview; send bytes(view) instead")
    elif isinstance(value, (np.bool_, np.integer, np.floating)):
        pass
    elif isinstance(value, dict):  # OrderedDict, defaultdict: travel as a plain map
        _check_dict(value, depth, arrays, tensor)
    elif isinstance(value, (list, tuple)):  # namedtuples travel as lists
        _check_items(value, depth, arrays, tensor)
    elif isinstance(value, np.ndarray):
        raise _Refusal(f"is a {t.__name__} (an ndarray subclass); send np.asarray(value)")
    else:
        raise _Refusal(
            f"has type {t.__module__}.{t.__qualname__}, which cannot cross a channel; send "
            "None, bool, int, float, str, bytes, lists, dicts with str keys, numpy arrays or "
            "torch tensors"
        )


def _check_dict(value: dict[Any, Any], depth: int, arrays: bool, tensor: type | None) -> None:
    for key, item in value.items():
        if type(key) is not str:
            raise _Refusal(f"has the key {key!r} ({type(key).__name__}); dict keys must be str")
        if type(item) not in _LEAF:
            try:
                _check(item, depth + 1, arrays, tensor)
            except _Refusal as refusal:
                refusal.parts.append(f"[{key!r}]")
                raise


def _check_items(value: Sequence[Any], depth: int, arrays: bool, tensor: type | None) -> None:
    for index, item in enumerate(value):
        if type(item) not in _LEAF:
            try:
                _check(item, depth + 1, arrays, tensor)
            except _Refusal as refusal:
                refusal.parts.append(f"[{index}]")
                raise


def _check_array(value: Any, arrays: bool) -> None:
    if not arrays:
        raise _Refusal(f"is an array ({type(value).__name__}); only plain values are allowed here")
    reason = unsupported(value)
    if reason is not None:
        raise _Refusal(reason)


def _refuse(value: Any, root: str, arrays: bool) -> None:
    """Walk ``value`` and raise ``WireError`` naming the first part that cannot cross."""
    try:
        _check(value, 0, arrays, torch_tensor_type())
    except _Refusal as refusal:
        parts = refusal.parts[::-1]
        if len(parts) > 12:  # deep values: keep the path readable
            parts = [*parts[:6], "...", *parts[-5:]]
        path = root + "".join(parts)
        raise WireError(f"{path} {refusal.reason}") from None


def _find_big_int(value: Any, path: str) -> str | None:
    """Path of the first int outside msgpack's 64-bit range (the error path only)."""
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return path if not _INT_MIN <= value <= _INT_MAX else None
    items: Any = ()
    if isinstance(value, dict):
        items = ((f"{path}[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for sub_path, item in items:
        found = _find_big_int(item, sub_path)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- encoding


def _make_default(buffers: list[memoryview], segments: SegmentBatch | None) -> Callable[[Any], Any]:
    """The msgpack ``default`` hook: arrays become buffer references, numpy scalars plain."""

    def default(obj: Any) -> Any:
        if type(obj) is np.ndarray:
            return array_reference(obj, buffers, segments)
        if isinstance(obj, (np.bool_, np.integer, np.floating)):
            return obj.item()
        if isinstance(obj, int):  # msgpack asks again for ints over 64 bits
            raise OverflowError(obj)
        # a torch tensor: _check let nothing else through
        return array_reference(obj, buffers, segments)

    return default


_HEADERS: dict[tuple[str, int], bytes] = {}


def _header(kind: str, count: int, meta: Mapping[str, Any] | None) -> bytes:
    if meta is None:
        cached = _HEADERS.get((kind, count))
        if cached is None:
            cached = msgpack.packb({"v": WIRE_VERSION, "k": kind, "n": count})
            if count < 8 and len(_HEADERS) < 256:
                _HEADERS[(kind, count)] = cached
        return cached
    if not isinstance(meta, Mapping):
        raise WireError(f"meta must be a map with str keys, got {type(meta).__name__}")
    _refuse(dict(meta), "meta", arrays=False)
    return pack({"v": WIRE_VERSION, "k": kind, "n": count, "m": dict(meta)}, "header")


def encode(
    value: Any,
    kind: str = KIND_RECORD,
    meta: Mapping[str, Any] | None = None,
    segments: SegmentBatch | None = None,
) -> list[bytes | memoryview]:
    """Frames for ``value``: ``[header, body, *buffers]``; buffers are views, not copies.

    ``segments``: an ipc writer's shared memory for this message; large arrays go there.
    Raises ``WireError`` naming the offending part (``value['x'][2]``) when something in
    the value cannot cross a channel.
    """
    if not isinstance(kind, str) or not 0 < len(kind) <= _MAX_KIND_LEN:
        raise WireError(f"message kind must be a str of 1..{_MAX_KIND_LEN} characters: {kind!r}")
    if type(value) in _LEAF:  # fast path: nothing to walk, no buffers
        try:
            body = msgpack.packb(value)
        except OverflowError as exc:
            raise WireError(f"value {value} is outside the 64-bit integer range") from exc
        return [_header(kind, 0, meta), body]
    _refuse(value, "value", arrays=True)
    buffers: list[memoryview] = []
    try:
        body = msgpack.packb(value, default=_make_default(buffers, segments))
    except OverflowError as exc:
        path = _find_big_int(value, "value") or "value"
        raise WireError(f"{path} is outside the 64-bit integer range") from exc
    except ValueError as exc:  # msgpack: memoryview it cannot export, recursion limits
        raise WireError(f"value cannot be packed: {exc}") from exc
    return [_header(kind, len(buffers), meta), body, *buffers]


def pack(value: Any, path: str = "value") -> bytes:
    """One msgpack frame of a plain value (no arrays): for headers, events and the like."""
    if type(value) not in _LEAF:
        _refuse(value, path, arrays=False)
    try:
        packed: bytes = msgpack.packb(value, default=_plain_default)
        return packed
    except OverflowError as exc:
        where = _find_big_int(value, path) or path
        raise WireError(f"{where} is outside the 64-bit integer range") from exc


def _plain_default(obj: Any) -> Any:
    if isinstance(obj, (np.bool_, np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, int):  # msgpack asks again for ints over 64 bits
        raise OverflowError(obj)
    raise TypeError(f"cannot pack {type(obj).__name__}")


# --------------------------------------------------------------------------- decoding


def _view(frame: Any) -> memoryview:
    """A flat byte view of a frame, whatever it came as (bytes, memoryview, zmq.Frame)."""
    try:
        view = memoryview(frame)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(
            f"a frame of type {type(frame).__name__} is not a contiguous byte buffer"
        ) from exc
    return view


def unpack(frame: Any, what: str = "frame") -> Any:
    """Decode one msgpack frame of plain data; any fault is ``MalformedMessage``."""
    data = _view(frame)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            ext_hook=no_ext,
            timestamp=2,
        )
    except MalformedMessage:
        raise
    except Exception as exc:  # msgpack raises several families; all mean "not our data"
        raise MalformedMessage(f"{what} is not valid msgpack: {type(exc).__name__}: {exc}") from exc


def _read_header(frame: Any, buffer_count: int) -> tuple[str, dict[str, Any]]:
    header = unpack(frame, "header (frame 0)")
    if type(header) is not dict:
        raise MalformedMessage(f"header (frame 0) must be a map, got {type(header).__name__}")
    unknown = header.keys() - _HEADER_KEYS
    if unknown:
        raise MalformedMessage(f"header has unknown fields {sorted(unknown)}")
    version = header.get("v")
    if version != WIRE_VERSION or type(version) is not int:
        raise MalformedMessage(
            f"header field 'v' is {version!r}; this side speaks wire version {WIRE_VERSION}"
        )
    kind = header.get("k")
    if type(kind) is not str or not 0 < len(kind) <= _MAX_KIND_LEN:
        raise MalformedMessage(f"header field 'k' must be a short str, got {kind!r}")
    count = header.get("n")
    if type(count) is not int or count != buffer_count:
        raise MalformedMessage(
            f"header field 'n' is {count!r} but the message has {buffer_count} buffer frame(s)"
        )
    meta = header.get("m", {})
    if type(meta) is not dict:
        raise MalformedMessage(f"header field 'm' must be a map, got {type(meta).__name__}")
    return kind, meta


_KNOWN_HEADERS: Final[dict[bytes, str]] = {
    msgpack.packb({"v": WIRE_VERSION, "k": kind, "n": 0}): kind for kind in (KIND_RECORD, KIND_EOS)
}
_KNOWN_HEADER_LEN: Final = max(len(header) for header in _KNOWN_HEADERS)


def _known_kind(head: Any) -> str | None:
    if type(head) is bytes:
        return _KNOWN_HEADERS.get(head)
    try:
        return _KNOWN_HEADERS.get(bytes(head)) if len(head) <= _KNOWN_HEADER_LEN else None
    except TypeError:  # not a buffer: the full path says so
        return None


def decode(
    frames: Sequence[Any], segments: ReaderSegments | None = None, budget: int = 0
) -> Message:
    """Rebuild a ``Message`` from its frames; raises ``MalformedMessage`` on any fault.

    ``segments``: an ipc reader's shared memory, the only way a shared-memory handle is
    accepted; ``budget``: how many bytes those segments may add up to.
    """
    frame_count = len(frames)
    if frame_count == 2:
        # Fast path: a record or end-of-stream without buffers or meta, byte for byte the
        # header this module writes, so there is nothing in it left to check.
        kind = _known_kind(frames[0])
        if kind is not None:
            if segments is None:
                return Message(kind, unpack(frames[1], "body (frame 1)"), {})
            try:  # plain data, as small records are, needs no array builder
                return Message(kind, unpack(frames[1], "body (frame 1)"), {})
            except MalformedMessage as exc:
                if not isinstance(exc, SharedHandle):
                    raise
            return Message(kind, _unpack_body(frames[1], [], segments, budget), {})
    if frame_count < 2:
        raise MalformedMessage(
            f"a message has at least 2 frames (header, body), this one has {frame_count}"
        )
    kind, meta = _read_header(frames[0], frame_count - 2)
    if frame_count == 2 and segments is None:
        return Message(kind, unpack(frames[1], "body (frame 1)"), meta)
    buffers = [_view(frame) for frame in frames[2:]]
    return Message(kind, _unpack_body(frames[1], buffers, segments, budget), meta)


def _unpack_body(
    frame: Any, buffers: list[memoryview], segments: ReaderSegments | None, budget: int
) -> Any:
    """The body with its array references (buffer frames, shared memory) resolved."""
    builder = ArrayBuilder(buffers, segments, budget)
    try:
        value = msgpack.unpackb(
            _view(frame), raw=False, strict_map_key=True, ext_hook=builder, timestamp=2
        )
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage(
            f"body (frame 1) is not valid msgpack: {type(exc).__name__}: {exc}"
        ) from exc
    if not all(builder.used):
        unused = [i for i, used in enumerate(builder.used) if not used]
        raise MalformedMessage(f"buffer frame(s) {unused} are not referenced by the body")
    return value


# --------------------------------------------------------------------------- signals and sizes


def encode_signal(code: int) -> bytes:
    """The high-lane frame of a signal: the code as a little-endian uint16."""
    if not isinstance(code, int) or isinstance(code, bool):
        raise WireError(f"a signal code must be an int 0..65535, got {type(code).__name__}")
    try:
        return int(code).to_bytes(2, "little")
    except OverflowError as exc:
        raise WireError(f"signal code {code} is outside 0..65535 (a uint16)") from exc


def decode_signal(frame: Any) -> int:
    """The code in a high-lane frame; ``MalformedMessage`` unless it is exactly 2 bytes."""
    data = _view(frame)
    if data.nbytes != 2:
        raise MalformedMessage(f"a signal frame is exactly 2 bytes, this one has {data.nbytes}")
    return int.from_bytes(data, "little")


def message_size(frames: Sequence[Any]) -> int:
    """Total bytes of a frame list, as the size limit of a channel counts them."""
    total = 0
    for frame in frames:
        total += frame.nbytes if type(frame) is memoryview else len(frame)
    return total
