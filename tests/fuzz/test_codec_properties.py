"""Properties of the wire format: every supported value round-trips exactly, and no byte
sequence makes ``decode`` fail with anything but ``MalformedMessage``."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aif.communication import codec
from aif.errors import MalformedMessage

DTYPES = [np.dtype(name) for name in codec.DTYPES]

arrays = st.sampled_from(DTYPES).flatmap(
    lambda dtype: hnp.arrays(
        dtype,
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
        elements=hnp.from_dtype(dtype, allow_nan=True, allow_subnormal=True),
    )
)
tensors = arrays.map(lambda arr: torch.from_numpy(arr.copy()))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=40),
)
values = st.recursive(
    st.one_of(scalars, arrays, tensors),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=12,
)


def same(sent: Any, got: Any) -> bool:
    """Exact equality as the wire promises it: tuples become lists, arrays keep every byte."""
    if isinstance(sent, np.ndarray):
        return (
            type(got) is np.ndarray
            and got.dtype == sent.dtype
            and got.shape == sent.shape
            and got.tobytes() == np.ascontiguousarray(sent).tobytes()
        )
    if isinstance(sent, torch.Tensor):
        return (
            isinstance(got, torch.Tensor)
            and got.dtype == sent.dtype
            and got.shape == sent.shape
            and got.numpy().tobytes() == sent.contiguous().numpy().tobytes()
        )
    if isinstance(sent, (list, tuple)):
        return type(got) is list and len(got) == len(sent) and all(map(same, sent, got))
    if isinstance(sent, dict):
        return (
            type(got) is dict
            and got.keys() == sent.keys()
            and all(same(v, got[k]) for k, v in sent.items())
        )
    if isinstance(sent, float) and math.isnan(sent):
        return isinstance(got, float) and math.isnan(got)
    return type(got) is type(sent) and bool(got == sent)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_every_supported_value_round_trips_exactly(value: Any) -> None:
    frames = codec.encode(value)
    assert codec.message_size(frames) == sum(len(bytes(f)) for f in frames)
    message = codec.decode([bytes(f) for f in frames])
    assert message.kind == codec.KIND_RECORD
    assert same(value, message.value)


def decode_or_malformed(frames: list[bytes]) -> None:
    with contextlib.suppress(MalformedMessage):
        codec.decode(frames)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_frames_decode_or_are_malformed(frames: list[bytes]) -> None:
    decode_or_malformed(frames)


@st.composite
def damaged(draw: st.DrawFn) -> list[bytes]:
    """A valid encoding, then truncated, bit-flipped, frames dropped or duplicated."""
    frames = [bytes(f) for f in codec.encode(draw(values))]
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "flip", "drop", "duplicate", "swap"]))
        index = draw(st.integers(0, len(frames) - 1)) if frames else 0
        if not frames:
            break
        frame = frames[index]
        if how == "truncate":
            frames[index] = frame[: draw(st.integers(0, max(0, len(frame) - 1)))]
        elif how == "flip" and frame:
            bit = draw(st.integers(0, len(frame) * 8 - 1))
            flipped = bytearray(frame)
            flipped[bit // 8] ^= 1 << (bit % 8)
            frames[index] = bytes(flipped)
        elif how == "drop":
            del frames[index]
        elif how == "duplicate":
            frames.insert(index, frame)
        elif how == "swap" and len(frames) > 1:
            other = draw(st.integers(0, len(frames) - 1))
            frames[index], frames[other] = frames[other], frames[index]
    return frames


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_messages_decode_or_are_malformed(frames: list[bytes]) -> None:
    decode_or_malformed(frames)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=8))
def test_signal_frames_decode_or_are_malformed(frame: bytes) -> None:
    try:
        code = codec.decode_signal(frame)
    except MalformedMessage:
        assert len(frame) != 2
    else:
        assert len(frame) == 2 and codec.encode_signal(code) == frame
