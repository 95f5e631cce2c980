"""numpy arrays and torch tensors as raw buffer frames: the array half of the wire format.

``aif.communication.codec`` draws the frame layout and packs the body; an array in the
body is only a reference to a buffer frame. This module is everything behind that
reference: which dtypes may cross (``DTYPES``), how an array or tensor becomes a flat
little-endian byte view without a copy (``array_reference``), and how a reference and
its received frame become an array or tensor again, checking every field on the way
(``ArrayBuilder``). It keeps the numpy and torch details out of the codec, and it never
imports torch unless a tensor is sent or received.
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import msgpack
import numpy as np

from aif.errors import MalformedMessage

if TYPE_CHECKING:
    from aif.communication.shm import ReaderSegments, SegmentBatch

__all__ = [
    "DTYPES",
    "EXT_ARRAY",
    "EXT_SHM_ARRAY",
    "ArrayBuilder",
    "SharedHandle",
    "array_reference",
    "no_ext",
    "torch_tensor_type",
    "unsupported",
]

#: The ExtType code of an array reference in the body.
EXT_ARRAY: Final = 1
#: The ExtType code of an array in a shared-memory segment (``aif.communication.shm``).
EXT_SHM_ARRAY: Final = 2
#: Array element types that cross the wire, by numpy name (always little-endian on the wire).
DTYPES: Final[Mapping[str, np.dtype[Any]]] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    )
}  # fmt: skip
#: (kind, itemsize) -> name: ``dtype.name`` is computed in Python and slow on the hot path.
_DTYPE_NAME: Final[dict[tuple[str, int], str]] = {
    (dtype.kind, dtype.itemsize): name for name, dtype in DTYPES.items()
}
_MAX_NDIM: Final = 32
_NOT_LITTLE: Final = frozenset({">"} if sys.byteorder == "little" else {">", "="})


# --------------------------------------------------------------------------- checking


def torch_tensor_type() -> type | None:
    """``torch.Tensor`` when torch is imported, else None (a value can't be one).

    An AIM may be importing torch in a worker thread while another encodes: until
    ``torch.Tensor`` exists, no value can be a tensor either.
    """
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    return cast(type, tensor) if tensor is not None else None


def unsupported(value: Any) -> str | None:
    """Why an ndarray or torch tensor cannot cross (dtype, layout), or None when it can."""
    if type(value) is np.ndarray:
        if (value.dtype.kind, value.dtype.itemsize) not in _DTYPE_NAME:
            return f"is an ndarray of dtype {value.dtype}; {_dtype_hint()}"
        return None
    if not _TORCH_TO_NAME:
        _load_torch_names()
    if value.layout is not sys.modules["torch"].strided:
        return f"is a torch tensor with layout {value.layout}; send .to_dense()"
    if value.dtype not in _TORCH_TO_NAME:
        return (
            f"is a torch tensor of dtype {value.dtype}, which numpy cannot hold; convert it "
            f"first (e.g. tensor.float()); {_dtype_hint()}"
        )
    return None


def _dtype_hint() -> str:
    return "supported dtypes are " + ", ".join(DTYPES)


# --------------------------------------------------------------------------- encoding


def _array_buffer(arr: np.ndarray[Any, Any]) -> memoryview:
    """A flat byte view of ``arr``'s memory, little-endian and C-contiguous (copies only then)."""
    if arr.dtype.byteorder in _NOT_LITTLE:
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    flat: Any = arr.reshape(-1).view(np.uint8)  # numpy's stubs do not declare the buffer
    return memoryview(flat)


def _tensor_array(tensor: Any) -> np.ndarray[Any, Any]:
    """A numpy view of a torch tensor's CPU memory (a copy only for GPU or lazy-conj tensors)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    tensor = tensor.resolve_conj().resolve_neg()
    return tensor.numpy()  # type: ignore[no-any-return]


_TORCH_TO_NAME: dict[Any, str] = {}


def _load_torch_names() -> None:
    """Fill the torch dtype table on first use, so that importing aif does not import torch."""
    import torch

    for name in DTYPES:
        dtype = getattr(torch, name, None)
        if isinstance(dtype, torch.dtype):
            _TORCH_TO_NAME[dtype] = name


def array_reference(
    obj: Any, buffers: list[memoryview], segments: SegmentBatch | None = None
) -> msgpack.ExtType:
    """The body's stand-in for an ndarray or torch tensor; its memory is appended to ``buffers``.

    With ``segments`` (an ipc channel's writer), a large array is copied into shared
    memory instead and the stand-in is its handle. ``obj`` must have passed
    ``unsupported``: anything that is not an ndarray is taken for a torch tensor.
    """
    if type(obj) is np.ndarray:
        lib = "np"
        arr = obj
    else:
        lib = "torch"
        arr = _tensor_array(obj)
    data = _array_buffer(arr)
    dtype = arr.dtype
    name = _DTYPE_NAME[dtype.kind, dtype.itemsize]
    if segments is not None:
        handle = segments.put(data)
        if handle is not None:
            segment, ticket = handle
            ref = msgpack.packb([segment, data.nbytes, ticket, name, list(arr.shape), lib])
            return msgpack.ExtType(EXT_SHM_ARRAY, ref)
    buffers.append(data)
    ref = msgpack.packb([len(buffers) - 1, name, list(arr.shape), lib])
    return msgpack.ExtType(EXT_ARRAY, ref)


# --------------------------------------------------------------------------- decoding


class SharedHandle(MalformedMessage):
    """A shared-memory handle met by a decode that takes none (the codec may retry)."""


def no_ext(code: int, data: bytes) -> Any:
    """The ext hook for plain data (an array reference, a header): it holds no ext types."""
    if code == EXT_SHM_ARRAY:
        raise SharedHandle(
            "a shared-memory array handle arrived where only buffer frames are taken "
            "(a tcp or inproc channel, or a plain decode)"
        )
    raise MalformedMessage(f"unexpected msgpack extension type {code} where plain data belongs")


def _reference(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=no_ext)
    except MalformedMessage:
        raise
    except Exception as exc:
        raise MalformedMessage(f"{what} is not valid msgpack: {type(exc).__name__}: {exc}") from exc


class ArrayBuilder:
    """The body's ext hook: turns each buffer reference into an array, checking every field.

    ``segments``: the reader's shared-memory side on an ipc channel; without it a
    shared-memory handle is refused. ``budget``: the bytes such handles may add up to.
    """

    __slots__ = ("budget", "buffers", "segments", "used")

    def __init__(
        self,
        buffers: list[memoryview],
        segments: ReaderSegments | None = None,
        budget: int = 0,
    ) -> None:
        self.buffers = buffers
        self.used = [False] * len(buffers)
        self.segments = segments
        self.budget = budget

    def __call__(self, code: int, data: bytes) -> Any:
        if code == EXT_SHM_ARRAY:
            return self._shared(data)
        if code != EXT_ARRAY:
            raise MalformedMessage(f"unknown msgpack extension type {code} in the body")
        ref = _reference(data, "array reference")
        if type(ref) is not list or len(ref) != 4:
            raise MalformedMessage(f"array reference must be [index, dtype, shape, lib]: {ref!r}")
        index, dtype_name, shape, lib = ref
        count = len(self.buffers)
        if type(index) is not int or not 0 <= index < count:
            raise MalformedMessage(f"array reference points at buffer {index!r} of {count}")
        if self.used[index]:
            raise MalformedMessage(f"buffer {index} is referenced twice")
        self.used[index] = True
        dtype, shape = _checked(dtype_name, shape, lib)
        buffer = self.buffers[index]
        elements = math.prod(shape)
        if elements * dtype.itemsize != buffer.nbytes:
            raise MalformedMessage(
                f"buffer {index} holds {buffer.nbytes} bytes but shape {shape} of {dtype_name} "
                f"needs {elements * dtype.itemsize}"
            )
        return _build(buffer, dtype, elements, shape, lib)

    def _shared(self, data: bytes) -> Any:
        if self.segments is None:
            raise MalformedMessage(
                "a shared-memory array handle arrived where only buffer frames are taken "
                "(a tcp or inproc channel, or a plain decode)"
            )
        ref = _reference(data, "shared-memory handle")
        if type(ref) is not list or len(ref) != 6:
            raise MalformedMessage(
                f"shared-memory handle must be [name, size, ticket, dtype, shape, lib]: {ref!r}"
            )
        name, nbytes, ticket, dtype_name, shape, lib = ref
        dtype, shape = _checked(dtype_name, shape, lib)
        elements = math.prod(shape)
        if elements * dtype.itemsize != nbytes:
            raise MalformedMessage(
                f"shared-memory handle {name!r} holds {nbytes!r} bytes but shape {shape} of "
                f"{dtype_name} needs {elements * dtype.itemsize}"
            )
        buffer, release = self.segments.open(name, nbytes, ticket, self.budget)
        self.budget -= nbytes
        holder = np.frombuffer(buffer, dtype=dtype, count=elements)
        # The segment is free for its writer again once nothing refers to its memory: the
        # holder is the base of every array made from it (a torch tensor keeps its array).
        weakref.finalize(holder, release)
        return _build(holder, dtype, elements, shape, lib)


def _checked(dtype_name: Any, shape: Any, lib: Any) -> tuple[np.dtype[Any], list[int]]:
    dtype = DTYPES.get(dtype_name) if type(dtype_name) is str else None
    if dtype is None:
        raise MalformedMessage(f"array dtype {dtype_name!r} is not allowed; {_dtype_hint()}")
    if (
        type(shape) is not list
        or len(shape) > _MAX_NDIM
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise MalformedMessage(f"array shape must be a list of at most 32 sizes: {shape!r}")
    if lib != "np" and lib != "torch":
        raise MalformedMessage(f"array library must be 'np' or 'torch', got {lib!r}")
    return dtype, shape


def _build(buffer: Any, dtype: np.dtype[Any], elements: int, shape: list[int], lib: str) -> Any:
    if isinstance(buffer, np.ndarray):
        arr = buffer.reshape(shape)
    else:
        arr = np.frombuffer(buffer, dtype=dtype, count=elements).reshape(shape)
    if arr.dtype.byteorder in _NOT_LITTLE:  # only on big-endian hosts
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return _to_tensor(arr) if lib == "torch" else arr


def _to_tensor(arr: np.ndarray[Any, Any]) -> Any:
    """A torch tensor over the received memory.

    Zero-copy when the buffer is writable and aligned, which is the case for frames a
    channel receives (``zmq.Frame`` memory is writable). A read-only buffer (``bytes``)
    is copied, because a tensor over memory it must not write is undefined behaviour
    that torch warns about.
    """
    import torch

    if not arr.flags.writeable or not arr.flags.aligned:
        arr = arr.copy()
    return torch.from_numpy(arr)
