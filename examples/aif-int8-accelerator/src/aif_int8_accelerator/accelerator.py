"""The int8 accelerator as an aif AIM (``type: int8-matmul``).

Written only against aif's public API (``from aif import ...``), as every plug-in
is: the same class runs inside the controller, in a child process, or in a host on
the machine the device is plugged into (``aif aim serve int8-matmul ...``).

The device is emulated (``quantise``); a driver for a real board would replace
``_program`` and ``_multiply`` and keep the rest: the ports, the parameters, the
checks and the numbers it reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydantic

from aif import AIM, ConfigError, HardwareError, PortTypeError, Record, Signal
from aif_int8_accelerator.quantise import MAX_INPUTS, QuantisedWeights, int8_matmul


class Int8Params(pydantic.BaseModel):
    """Parameters of ``int8-matmul``: the matrix to program, and the array it must fit."""

    model_config = pydantic.ConfigDict(extra="forbid")

    weights: list[list[float]] | None = pydantic.Field(
        default=None, description="The matrix W inline, one row per output (outputs x inputs)."
    )
    weights_file: str | None = pydantic.Field(
        default=None,
        description="A .npy file holding W (outputs x inputs), read from the workflow's folder.",
    )
    rows: pydantic.PositiveInt = pydantic.Field(
        default=256, description="Outputs the MAC array has: W may have at most this many rows."
    )
    cols: pydantic.PositiveInt = pydantic.Field(
        default=256,
        le=MAX_INPUTS,
        description="Inputs the MAC array has: W may have at most this many columns.",
    )
    max_error: pydantic.PositiveFloat | None = pydantic.Field(
        default=None,
        description="Fail when a product's relative error against float arithmetic exceeds this.",
    )
    latency: pydantic.NonNegativeFloat = pydantic.Field(
        default=0.0, description="Emulated compute time of one product, in seconds."
    )

    @pydantic.model_validator(mode="after")
    def _one_matrix_that_fits(self) -> Int8Params:
        if (self.weights is None) == (self.weights_file is None):
            raise ValueError(
                "give the matrix exactly once: inline as 'weights' or as 'weights_file' (.npy)"
            )
        if self.weights is not None:
            widths = {len(row) for row in self.weights}
            if not self.weights or widths == {0} or len(widths) != 1:
                raise ValueError(
                    "'weights' must be a non-empty matrix: a list of rows of equal length "
                    f"(got rows of lengths {sorted(widths)})"
                )
            check_fits((len(self.weights), widths.pop()), self.rows, self.cols, "'weights'")
        return self


def check_fits(shape: tuple[int, ...], rows: int, cols: int, what: str) -> None:
    """Refuse a matrix the MAC array cannot hold, naming both sizes and the fix."""
    if len(shape) != 2 or shape[0] > rows or shape[1] > cols:
        raise ValueError(
            f"{what} of shape {shape} does not fit the {rows}x{cols} MAC array "
            "(outputs x inputs); raise 'rows'/'cols' if the device is bigger, or split W"
        )


class Int8MatMul(AIM):
    """An int8 matrix-multiply accelerator: y = W x with int8 weights and inputs, int32 sums.

    Each record on ``x`` is a float32 tensor of shape (inputs,) or (batch, inputs); the
    product goes out on ``y`` with shape (outputs,) or (batch, outputs). W is programmed
    once in ``setup``. Every product is checked against float arithmetic: the relative
    error is published as progress and summed up in the result, and ``max_error`` turns
    a device that drifts out of tolerance into a failed run.
    """

    inputs = {"x": "tensor<float32>"}
    outputs = {"y": "tensor<float32>"}
    Params = Int8Params
    technology = "Hardware"
    implementer = "aif-int8-accelerator"
    version = "1.0.0"

    # -- lifecycle ---------------------------------------------------------------------

    async def setup(self) -> None:
        """Load W and program the array (quantise it to int8 once)."""
        params = self._params()
        matrix = self._load_matrix(params)
        self._weights = self._program(matrix)
        self.log.info(
            "programmed %dx%d weights, scale %.3g", *self._weights.shape, self._weights.scale
        )

    def capabilities(self) -> Mapping[str, Any]:
        """What the device is and what it holds: senders can route by it."""
        params = self._params()
        outputs, inputs = self._weights.shape
        return {
            "device": "int8 MAC array (numpy emulation)",
            "array": [params.rows, params.cols],
            "weights": [outputs, inputs],
            "weight_bits": 8,
            "input_bits": 8,
            "accumulator_bits": 32,
        }

    async def run(self) -> None:
        """Multiply every input tensor by W until the inputs close or the run stops."""
        errors: list[float] = []
        vectors = 0
        async for event in self.events():
            if isinstance(event, Signal):
                continue  # the host handles stop/suspend; no codes of our own
            if not isinstance(event, Record):
                break  # Stop: inputs closed or the run is stopping
            x = self._check_input(event.value)
            y, error = await self._multiply(x)
            max_error = self._params().max_error
            if max_error is not None and error > max_error:
                raise HardwareError(
                    f"product {len(errors) + 1}: relative error {error:.3g} exceeds max_error "
                    f"{max_error:g}; the inputs' range may be too wide for one int8 scale"
                )
            errors.append(error)
            vectors += 1 if x.ndim == 1 else x.shape[0]
            await self.send("y", y)
            await self.progress(step=len(errors), error=round(error, 6))
            if not await self.checkpoint():  # waits here while suspended; False: stop now
                break
        await self.result(
            products=len(errors),
            vectors=vectors,
            max_error=max(errors, default=0.0),
            mean_error=float(np.mean(errors)) if errors else 0.0,
            weight_scale=self._weights.scale,
        )

    async def on_suspend(self) -> None:
        self.log.info("suspended: the array idles with its weights kept")

    # -- the device ----------------------------------------------------------------------

    def _program(self, matrix: npt.NDArray[np.float32]) -> QuantisedWeights:
        """Write W into the array. Emulated: quantise it; a real driver uploads the codes."""
        return QuantisedWeights.from_float(matrix)

    async def _multiply(self, x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], float]:
        """One product on the device, off the event loop so heartbeats keep flowing."""
        y, error = await asyncio.to_thread(int8_matmul, self._weights, x)
        latency = self._params().latency
        if latency:
            await asyncio.sleep(latency)
        return y, error

    # -- checks --------------------------------------------------------------------------

    def _params(self) -> Int8Params:
        assert isinstance(self.params, Int8Params)
        return self.params

    def _load_matrix(self, params: Int8Params) -> npt.NDArray[np.float32]:
        if params.weights is not None:
            return np.asarray(params.weights, dtype=np.float32)
        assert params.weights_file is not None
        path = Path(params.weights_file)
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"weights_file {params.weights_file!r}: cannot read {path} ({exc}); "
                "give a .npy file of shape (outputs, inputs), e.g. saved with numpy.save"
            ) from exc
        try:
            check_fits(matrix.shape, params.rows, params.cols, f"weights_file {path}")
            return np.asarray(matrix, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from exc

    def _check_input(self, value: Any) -> npt.NDArray[np.float32]:
        x = np.asarray(value, dtype=np.float32)
        inputs = self._weights.shape[1]
        if x.ndim not in (1, 2) or x.shape[-1] != inputs:
            raise PortTypeError(
                f"input 'x': expected a tensor of shape ({inputs},) or (batch, {inputs}) for "
                f"the {self._weights.shape[0]}x{inputs} weights, got shape {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            raise PortTypeError("input 'x': NaN or infinity has no int8 code; send finite values")
        return x
