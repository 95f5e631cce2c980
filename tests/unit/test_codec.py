"""The wire format: what crosses, what is refused (and how it says so), what decode rejects."""

from __future__ import annotations

import collections
import subprocess
import sys
from typing import Any

import msgpack
import numpy as np
import pytest
import torch
import zmq

from aif.communication import codec
from aif.errors import MalformedMessage, WireError


def roundtrip(value: Any, **kwargs: Any) -> codec.Message:
    return codec.decode(codec.encode(value, **kwargs))


def frames_of(header: Any, body: Any, *buffers: bytes) -> list[bytes]:
    return [msgpack.packb(header), msgpack.packb(body), *buffers]


def array_ref(index: Any, dtype: Any, shape: Any, lib: Any = "np") -> msgpack.ExtType:
    return msgpack.ExtType(codec.EXT_ARRAY, msgpack.packb([index, dtype, shape, lib]))


# --------------------------------------------------------------------------- values that cross


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, float("inf"), "", "héllo",
     b"", b"\x00\xff", [], {}, [1, [2, [3]]], {"a": {"b": [None, b"x"]}}],
)  # fmt: skip
def test_plain_values_round_trip(value: Any) -> None:
    message = roundtrip(value)
    assert message.kind == codec.KIND_RECORD
    assert message.value == value
    assert message.meta == {}


def test_tuples_arrive_as_lists_and_byte_likes_as_bytes() -> None:
    value = {"t": (1, (2, 3)), "ba": bytearray(b"ab"), "mv": memoryview(b"cd")}
    assert roundtrip(value).value == {"t": [1, [2, 3]], "ba": b"ab", "mv": b"cd"}


def test_container_subclasses_travel_as_plain_containers() -> None:
    point = collections.namedtuple("point", "x y")
    value = collections.OrderedDict(a=point(1, 2), b=collections.defaultdict(int, c=3))
    assert roundtrip(value).value == {"a": [1, 2], "b": {"c": 3}}
    with pytest.raises(WireError, match=r"value\['b'\] has the key 4"):
        codec.encode({"b": collections.OrderedDict({4: 1})})


def test_numpy_scalars_arrive_as_python_scalars() -> None:
    value = [np.int8(-3), np.uint64(2**64 - 1), np.float32(0.5), np.float64(2.5), np.bool_(True)]
    decoded = roundtrip(value).value
    assert decoded == [-3, 2**64 - 1, 0.5, 2.5, True]
    assert [type(v) for v in decoded] == [int, int, float, float, bool]


@pytest.mark.parametrize("dtype", list(codec.DTYPES))
def test_arrays_of_every_dtype_round_trip_exactly(dtype: str) -> None:
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 256, size=24, dtype=np.uint8).view(np.uint8)
    arr = np.frombuffer(arr.tobytes() * np.dtype(dtype).itemsize, dtype=dtype).reshape(4, 6)
    decoded = roundtrip({"a": arr}).value["a"]
    assert type(decoded) is np.ndarray
    assert decoded.dtype == arr.dtype and decoded.shape == (4, 6)
    assert decoded.tobytes() == arr.tobytes()


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],  # strided
        np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        np.arange(5, dtype=">i4"),  # big-endian: converted, values kept
        np.array(3.25),  # 0-d
        np.zeros((0, 3), dtype=np.uint16),  # empty
    ],
    ids=["strided", "fortran", "big-endian", "0-d", "empty"],
)
def test_awkward_arrays_round_trip_by_value(arr: np.ndarray[Any, Any]) -> None:
    decoded = roundtrip(arr).value
    assert decoded.shape == arr.shape
    assert decoded.dtype == arr.dtype.newbyteorder("=")
    np.testing.assert_array_equal(decoded, arr)


def test_contiguous_arrays_are_not_copied_on_encode() -> None:
    arr = np.arange(1000, dtype=np.float32)
    frames = codec.encode({"x": arr})
    assert len(frames) == 3
    assert np.shares_memory(np.frombuffer(frames[2], dtype=np.float32), arr)


def test_decode_builds_arrays_over_the_frame_memory() -> None:
    arr = np.arange(8, dtype=np.int64)
    frames = codec.encode(arr)
    buffer = bytearray(frames[2])  # writable, like a received zmq.Frame
    decoded = codec.decode([frames[0], frames[1], buffer]).value
    buffer[0] = 42
    assert decoded[0] == 42


@pytest.mark.parametrize(
    "dtype",
    [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
     torch.float32, torch.float64, torch.complex64, torch.complex128, torch.uint16, torch.uint32,
     torch.uint64],
)  # fmt: skip
def test_tensors_round_trip_as_tensors(dtype: torch.dtype) -> None:
    tensor = (torch.arange(12) % 2).to(dtype).reshape(3, 4)
    decoded = roundtrip([tensor]).value[0]
    assert isinstance(decoded, torch.Tensor)
    assert decoded.dtype == dtype and decoded.shape == (3, 4)
    assert torch.equal(decoded, tensor)


def test_tensor_views_and_grad_tensors_are_sent_by_value() -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    weights = torch.ones(3, requires_grad=True)
    conj = torch.tensor([1 + 2j], dtype=torch.complex64).conj()
    decoded = roundtrip({"t": base.t(), "w": weights, "c": conj}).value
    assert torch.equal(decoded["t"], base.t())
    assert torch.equal(decoded["w"], torch.ones(3)) and not decoded["w"].requires_grad
    assert torch.equal(decoded["c"], torch.tensor([1 - 2j], dtype=torch.complex64))


def test_tensor_from_read_only_bytes_is_copied_without_a_warning() -> None:
    # pytest turns warnings into errors: torch would warn over non-writable memory.
    frames = [bytes(f) for f in codec.encode(torch.arange(4))]
    assert torch.equal(codec.decode(frames).value, torch.arange(4))


def test_tensor_from_a_received_zmq_frame_shares_its_memory() -> None:
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://codec-frames")
        b.connect("inproc://codec-frames")
        a.send_multipart(codec.encode(torch.zeros(100_000)), copy=False)
        frames = b.recv_multipart(copy=False)
        tensor = codec.decode(frames).value
        memoryview(frames[2])[0:4] = np.float32(7.0).tobytes()
        assert tensor[0].item() == 7.0
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


def test_meta_travels_in_the_header() -> None:
    message = roundtrip(1, kind="job", meta={"id": "j-1", "try": 2})
    assert (message.kind, message.value, message.meta) == ("job", 1, {"id": "j-1", "try": 2})


def test_eos_has_its_own_kind() -> None:
    message = roundtrip(None, kind=codec.KIND_EOS)
    assert (message.kind, message.value) == ("eos", None)


def test_codec_does_not_import_torch_for_numpy_values() -> None:
    script = (
        "import sys, numpy as np\n"
        "from aif.communication import codec\n"
        "before = 'torch' in sys.modules\n"
        "codec.decode(codec.encode({'a': np.zeros(3), 'b': [1, 'x']}))\n"
        "assert ('torch' in sys.modules) == before, 'codec imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


# --------------------------------------------------------------------------- refused at encode


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"a": {1, 2}}, ["value['a']", "set"]),
        ([0, object()], ["value[1]", "object"]),
        ({"k": {3: "x"}}, ["value['k']", "key 3", "must be str"]),
        ({"x": [1, [2, 2**70]]}, ["value['x'][1][1]", "64-bit"]),
        ([np.array(["a"])], ["value[0]", "<U1", "float32"]),
        ({"m": np.ma.array([1])}, ["value['m']", "MaskedArray", "np.asarray"]),
        ([np.array([object()])], ["value[0]", "dtype object"]),
        ({"b": torch.zeros(2, dtype=torch.bfloat16)}, ["value['b']", "bfloat16", "tensor.float()"]),
        ({"s": torch.zeros(3).to_sparse()}, ["value['s']", "sparse", "to_dense"]),
        ([1j], ["value[0]", "complex"]),
    ],
    ids=["set", "object", "int-key", "big-int", "str-array", "masked", "object-array",
         "bfloat16", "sparse", "complex"],
)  # fmt: skip
def test_unsupported_values_are_refused_naming_the_path(value: Any, words: list[str]) -> None:
    with pytest.raises(WireError) as info:
        codec.encode(value)
    for word in words:
        assert word in str(info.value)


def test_deep_nesting_is_refused_with_a_readable_path() -> None:
    value: Any = 1
    for _ in range(codec.MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(WireError, match=r"nested deeper than 100 levels") as info:
        codec.encode(value)
    assert "..." in str(info.value)


def test_meta_must_be_plain() -> None:
    with pytest.raises(WireError, match=r"meta\['a'\]"):
        codec.encode(1, meta={"a": np.zeros(2)})


@pytest.mark.parametrize("kind", ["", "x" * 33, 3])
def test_kind_must_be_a_short_str(kind: Any) -> None:
    with pytest.raises(WireError, match="kind"):
        codec.encode(1, kind=kind)


def test_pack_and_unpack_plain_frames() -> None:
    assert codec.unpack(codec.pack({"a": [1, np.int16(2)]})) == {"a": [1, 2]}
    with pytest.raises(WireError, match=r"event\['x'\] is an array"):
        codec.pack({"x": np.zeros(1)}, "event")


# --------------------------------------------------------------------------- rejected at decode

GOOD_HEADER = {"v": 1, "k": "rec", "n": 1}


@pytest.mark.parametrize(
    ("frames", "words"),
    [
        ([b"\x80"], "at least 2 frames"),
        ([b"\xc1", b"\xc0"], "header (frame 0) is not valid msgpack"),
        (frames_of([1], None), "must be a map"),
        (frames_of({"v": 2, "k": "rec", "n": 0}, None), "wire version 1"),
        (frames_of({"v": True, "k": "rec", "n": 0}, None), "'v'"),
        (frames_of({"v": 1, "k": "", "n": 0}, None), "'k'"),
        (frames_of({"v": 1, "k": "rec", "n": 2}, None), "has 0 buffer frame"),
        (frames_of({"v": 1, "k": "rec", "n": 0, "x": 1}, None), "unknown fields"),
        (frames_of({"v": 1, "k": "rec", "n": 0, "m": [1]}, None), "'m' must be a map"),
        ([msgpack.packb({"v": 1, "k": "rec", "n": 0}), b"\x92\x01"], "body (frame 1)"),
        (frames_of({"v": 1, "k": "rec", "n": 0}, {1: 2}), "body (frame 1)"),
        ([msgpack.packb({"v": 1, "k": "rec", "n": 0}), b"\xa2\xff\xfe"], "body (frame 1)"),
        (frames_of(GOOD_HEADER, msgpack.ExtType(9, b""), b"x"), "extension type 9"),
        (frames_of(GOOD_HEADER, array_ref(1, "uint8", [1]), b"x"), "buffer 1 of 1"),
        (frames_of(GOOD_HEADER, array_ref(True, "uint8", [1]), b"x"), "buffer True"),
        (frames_of(GOOD_HEADER, array_ref(0, "object", [1]), b"x"), "dtype 'object'"),
        (frames_of(GOOD_HEADER, array_ref(0, "uint8", [2]), b"x"), "needs 2"),
        (frames_of(GOOD_HEADER, array_ref(0, "uint8", [-1]), b"x"), "shape"),
        (frames_of(GOOD_HEADER, array_ref(0, "uint8", [1] * 33), b"x"), "shape"),
        (frames_of(GOOD_HEADER, array_ref(0, "uint8", [1], "jax"), b"x"), "'jax'"),
        (frames_of(GOOD_HEADER, msgpack.ExtType(1, b"\x93\x00\x00\x00"), b"x"), "reference"),
        (frames_of(GOOD_HEADER, msgpack.ExtType(1, b"\xc1"), b"x"), "reference"),
        (frames_of(GOOD_HEADER, None, b"x"), "not referenced"),
        (
            frames_of({"v": 1, "k": "rec", "n": 1}, [array_ref(0, "uint8", [1])] * 2, b"x"),
            "referenced twice",
        ),
        (frames_of({"v": 1, "k": "rec", "n": 0}, [[[]]]), None),
    ],
)
def test_malformed_frames_are_rejected_with_the_reason(frames: list[bytes], words: Any) -> None:
    if words is None:  # a control: the same shape, well formed, decodes
        codec.decode(frames)
        return
    with pytest.raises(MalformedMessage) as info:
        codec.decode(frames)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "frames", [[1, 2], ["header", b""], [msgpack.packb({"v": 1, "k": "rec", "n": 0}), None]]
)
def test_frames_that_are_not_buffers_are_malformed(frames: list[Any]) -> None:
    with pytest.raises(MalformedMessage, match="not a contiguous byte buffer"):
        codec.decode(frames)


def test_hostile_lengths_do_not_allocate() -> None:
    header = msgpack.packb({"v": 1, "k": "rec", "n": 0})
    for body in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff"):
        with pytest.raises(MalformedMessage):
            codec.decode([header, body])


def test_hostile_nesting_is_malformed() -> None:
    header = msgpack.packb({"v": 1, "k": "rec", "n": 0})
    with pytest.raises(MalformedMessage):
        codec.decode([header, b"\x91" * 100_000 + b"\xc0"])


def test_timestamps_in_a_body_decode_as_plain_ints() -> None:
    header = msgpack.packb({"v": 1, "k": "rec", "n": 0})
    value = codec.decode([header, msgpack.packb(msgpack.Timestamp(1, 5))]).value
    assert value == 1_000_000_005


# --------------------------------------------------------------------------- signals and sizes


@pytest.mark.parametrize("code", [0, 1, 256, 0xFFFF])
def test_signals_are_two_little_endian_bytes(code: int) -> None:
    frame = codec.encode_signal(code)
    assert frame == code.to_bytes(2, "little")
    assert codec.decode_signal(frame) == code
    assert codec.decode_signal(memoryview(frame)) == code


@pytest.mark.parametrize("code", [-1, 0x10000, 1.0, "1", True])
def test_signal_codes_outside_uint16_are_refused(code: Any) -> None:
    with pytest.raises(WireError, match="signal code"):
        codec.encode_signal(code)


@pytest.mark.parametrize("frame", [b"", b"\x01", b"\x01\x02\x03"])
def test_signal_frames_must_be_exactly_two_bytes(frame: bytes) -> None:
    with pytest.raises(MalformedMessage, match="exactly 2 bytes"):
        codec.decode_signal(frame)


def test_message_size_counts_every_frame() -> None:
    frames = codec.encode({"a": np.zeros(10, dtype=np.float64)})
    assert codec.message_size(frames) == sum(len(bytes(f)) for f in frames)
    assert codec.message_size(frames) > 80
