"""The arithmetic of an int8 multiply-accumulate (MAC) array, emulated in numpy.

An edge accelerator of this kind keeps its weights as int8, turns each input tensor
into int8 with one scale for the whole tensor, multiplies and adds in int32, and
scales the sums back to floats on the way out. Symmetric scales keep zero exact;
-128 is left unused so that the range is the same on both sides::

    s_w = max|W| / 127     W_q = round(W / s_w)    in [-127, 127]   int8, once
    s_x = max|x| / 127     x_q = round(x / s_x)    in [-127, 127]   int8, per tensor
    acc = x_q @ W_q.T                                                int32, exact
    y   = acc * (s_w * s_x)                                          float32

The int32 sums are exact as long as ``in * 127 * 127 < 2**31`` (``in`` up to 133 144),
so the only error is the rounding of W and x. ``int8_matmul`` reports it as the
relative error against the float product, which makes the device's output checkable.
Plain numpy: nothing here knows about aif.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Largest magnitude of a symmetric int8 code.
QMAX = 127
#: Widest input an int32 accumulator adds up without overflow.
MAX_INPUTS = (2**31 - 1) // (QMAX * QMAX)


def quantise(values: npt.ArrayLike) -> tuple[npt.NDArray[np.int8], float]:
    """Symmetric per-tensor int8 codes of ``values`` and their scale (codes * scale ~ values).

    Raises ``ValueError`` for NaN or infinite values, which have no int8 code.
    """
    array = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("values must be finite numbers; NaN or infinity has no int8 code")
    peak = float(np.max(np.abs(array))) if array.size else 0.0
    scale = peak / QMAX if peak > 0 else 1.0
    codes = np.clip(np.rint(array / scale), -QMAX, QMAX).astype(np.int8)
    return codes, scale


@dataclass(frozen=True)
class QuantisedWeights:
    """A weight matrix as the array holds it: int8 codes, one scale, and the float original.

    ``original`` is kept only to measure the error of each product; the device itself
    computes with ``codes`` and ``scale``.
    """

    codes: npt.NDArray[np.int8]
    scale: float
    original: npt.NDArray[np.float32]

    @classmethod
    def from_float(cls, matrix: npt.ArrayLike) -> QuantisedWeights:
        """Quantise a float matrix of shape (outputs, inputs)."""
        original = np.asarray(matrix, dtype=np.float32)
        if original.ndim != 2 or original.size == 0:
            raise ValueError(
                f"weights must be a non-empty matrix (outputs x inputs), got shape {original.shape}"
            )
        if original.shape[1] > MAX_INPUTS:
            raise ValueError(
                f"weights have {original.shape[1]} inputs; an int32 accumulator is exact for "
                f"at most {MAX_INPUTS}"
            )
        codes, scale = quantise(original)
        return cls(codes=codes, scale=scale, original=original)

    @property
    def shape(self) -> tuple[int, int]:
        """(outputs, inputs)."""
        rows, cols = self.codes.shape
        return int(rows), int(cols)


def int8_matmul(
    weights: QuantisedWeights, x: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], float]:
    """``y = x @ W.T`` the way the int8 array computes it, and its relative error.

    ``x`` has shape (inputs,) or (batch, inputs); ``y`` has (outputs,) or (batch,
    outputs). The error is ``|y - y_float| / |y_float|`` (Frobenius norms; 0 when the
    float product is all zeros and so is ``y``).
    """
    inputs = np.asarray(x, dtype=np.float32)
    codes, scale = quantise(inputs)
    acc = codes.astype(np.int32) @ weights.codes.T.astype(np.int32)
    y = (acc.astype(np.float64) * (weights.scale * scale)).astype(np.float32)
    exact = inputs.astype(np.float64) @ weights.original.T.astype(np.float64)
    norm = float(np.linalg.norm(exact))
    diff = float(np.linalg.norm(y - exact))
    error = diff / norm if norm > 0 else diff
    return y, error
