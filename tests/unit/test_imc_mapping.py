"""Layers onto tiles: block splitting, unfolded convolutions, compensation, tensor loading.

The chip here is an ideal in-process fake at the mapping's one seam (``ChipPort``:
program and MVM, exact float arithmetic): it checks what a tile would refuse (shapes
bigger than a tile, inputs outside [-1, 1], batches over the limit) and lets the host
arithmetic be compared with torch's own layers. The real emulator behind the real
client is exercised in tests/integration/test_imc_driver.py.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aif.aims.analog.imc_chip.mapping import (
    CALIBRATION_VECTORS,
    ChipLayer,
    ChipModel,
    calibration_input,
    layer_matrix,
    split_blocks,
    tiles_needed,
)
from aif.aims.analog.imc_chip.twin import DigitalModel, build_digital_model, load_tensors
from aif.aims.analog.spec import ModelSpec
from aif.errors import ExperimentError


class IdealChip:
    """Exact products, tile limits enforced; ``gain`` stands in for drift."""

    def __init__(self, rows: int, cols: int, tiles: int, batch: int) -> None:
        self.rows, self.cols, self.tiles, self.batch = rows, cols, tiles, batch
        self.weights: dict[int, np.ndarray] = {}
        self.gain = 1.0
        self.requests: list[tuple[int, int]] = []  # (tile, vectors) per MVM

    async def program(self, tile: int, weights: np.ndarray) -> object:
        assert 0 <= tile < self.tiles
        assert weights.dtype == np.float32 and weights.ndim == 2
        assert weights.shape[0] <= self.rows and weights.shape[1] <= self.cols
        assert np.abs(weights).max() <= 1.0
        self.weights[tile] = weights.astype(np.float64)
        return None

    async def mvm(self, tile: int, inputs: np.ndarray) -> np.ndarray:
        assert inputs.dtype == np.float32 and inputs.ndim == 2
        assert len(inputs) <= self.batch
        assert np.abs(inputs).max(initial=0.0) <= 1.0 + 1e-6
        w = self.weights[tile]
        assert inputs.shape[1] == w.shape[1]
        self.requests.append((tile, len(inputs)))
        out: np.ndarray = (self.gain * inputs.astype(np.float64) @ w.T).astype(np.float32)
        return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def programmed(model: ChipModel, chip: IdealChip) -> ChipModel:
    run(model.program(chip))
    return model


# -- blocks ------------------------------------------------------------------------------


def test_blocks_cover_a_matrix_larger_than_a_tile_in_both_dimensions() -> None:
    torch.manual_seed(0)
    matrix = torch.randn(11, 17)
    blocks = split_blocks(matrix, rows=4, cols=6, first_tile=3)
    assert len(blocks) == tiles_needed(11, 17, 4, 6) == 3 * 3
    assert [b.tile for b in blocks] == list(range(3, 12))
    rebuilt = np.zeros((11, 17), dtype=np.float32)
    covered = np.zeros((11, 17), dtype=int)
    for b in blocks:
        assert b.weights.shape == (b.r1 - b.r0, b.c1 - b.c0)
        assert b.weights.shape[0] <= 4 and b.weights.shape[1] <= 6
        # each block fills [-1, 1]: its largest weight is exactly +-1
        assert np.abs(b.weights).max() == pytest.approx(1.0)
        rebuilt[b.r0 : b.r1, b.c0 : b.c1] = b.weights * b.scale
        covered[b.r0 : b.r1, b.c0 : b.c1] += 1
    assert (covered == 1).all()
    np.testing.assert_allclose(rebuilt, matrix.numpy(), rtol=1e-6, atol=1e-7)
    # the edge blocks are the remainders
    assert {(b.r1 - b.r0, b.c1 - b.c0) for b in blocks} == {(4, 6), (4, 5), (3, 6), (3, 5)}


def test_an_all_zero_block_is_programmed_as_zeros_with_scale_one() -> None:
    matrix = torch.zeros(2, 4)
    matrix[:, 2:] = torch.tensor([[0.5, -2.0], [1.0, 0.25]])
    left, right = split_blocks(matrix, rows=2, cols=2, first_tile=0)
    assert left.scale == 1.0 and not left.weights.any()
    assert right.scale == 2.0
    np.testing.assert_array_equal(right.weights, [[0.25, -1.0], [0.5, 0.125]])


def test_linear_split_over_tiles_equals_the_digital_layer() -> None:
    torch.manual_seed(1)
    linear = torch.nn.Linear(20, 13)
    digital = DigitalModel(torch.nn.Sequential(linear), analog=(0,))
    chip = IdealChip(rows=4, cols=6, tiles=16, batch=7)
    model = programmed(ChipModel(digital, rows=4, cols=6, tiles=16), chip)
    assert model.use.tiles_used == 4 * 4
    x = torch.randn(23, 20) * 3
    x[5] = 0.0  # a zero vector stays zero (its scale is not 0/0)
    got = run(model.forward(chip, x, batch=7))
    torch.testing.assert_close(got, linear(x).detach(), rtol=1e-5, atol=1e-5)
    # 23 vectors in requests of at most 7: 4 requests per tile
    assert len(chip.requests) == 16 * math.ceil(23 / 7)
    assert max(n for _, n in chip.requests) == 7


@pytest.mark.parametrize(
    ("stride", "padding", "dilation"), [(1, 0, 1), (1, 1, 1), (2, 1, 1), (1, 2, 2)]
)
def test_conv_unfolded_onto_tiles_equals_conv2d(stride: int, padding: int, dilation: int) -> None:
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(3, 5, 3, stride=stride, padding=padding, dilation=dilation)
    digital = DigitalModel(torch.nn.Sequential(conv), analog=(0,))
    # 5 x 27 matrix on 4 x 10 tiles: 2 row blocks x 3 column blocks
    chip = IdealChip(rows=4, cols=10, tiles=6, batch=50)
    model = programmed(ChipModel(digital, rows=4, cols=10, tiles=6), chip)
    assert model.use.tiles_used == 6
    x = torch.randn(4, 3, 9, 7)
    want = F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=padding, dilation=dilation)
    got = run(model.forward(chip, x, batch=50))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-5)


def test_an_experiment_cnn_on_an_ideal_chip_equals_its_digital_model() -> None:
    spec = ModelSpec.model_validate(
        {
            "convert": "all",
            "layers": [
                {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
                "ReLU",
                {"type": "MaxPool2d", "kernel_size": 2},
                "Flatten",
                {"type": "Linear", "out_features": 12, "analog": False},
                "Tanh",
                {"type": "Linear", "out_features": 10},
            ],
        }
    )
    torch.manual_seed(3)
    digital = build_digital_model(spec, (1, 8, 8))
    assert digital.analog == (0, 6)
    keys = list(digital.model.state_dict())
    assert keys == ["0.weight", "0.bias", "4.weight", "4.bias", "6.weight", "6.bias"]
    chip = IdealChip(rows=8, cols=10, tiles=64, batch=128)
    model = programmed(ChipModel(digital, rows=8, cols=10, tiles=64), chip)
    # conv 4 x 9 on one tile, Linear(12 -> 10) on 2 x 2
    assert model.use.as_dict() == {
        "tiles_used": 5,
        "tiles_total": 64,
        "cells_used": 36 + 120,
        "cells_in_used_tiles": 5 * 80,
        "cell_fill": round(156 / 400, 4),
    }
    assert "5/64 tiles" in model.use.text()
    assert isinstance(model.model[4], torch.nn.Linear)  # digital layers stay as they were
    assert [layer.index for layer in model.layers] == [0, 6]
    x = torch.rand(40, 1, 8, 8)
    want = digital.model.eval()(x).detach()
    got = run(model.forward(chip, x, batch=128))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    y = want.argmax(dim=1).numpy()
    assert run(model.accuracy(chip, x.numpy(), y, batch=128, chunk=16)) == 1.0
    with pytest.raises(TypeError, match="runs on the chip"):
        model.model(x)


def test_drift_compensation_restores_the_outputs_per_block() -> None:
    torch.manual_seed(4)
    linear = torch.nn.Linear(12, 6, bias=False)
    chip = IdealChip(rows=6, cols=6, tiles=2, batch=100)
    model = programmed(ChipModel(DigitalModel(torch.nn.Sequential(linear), (0,)), 6, 6, 2), chip)
    run(model.calibrate(chip))
    x = torch.randn(10, 12)
    chip.gain = 0.8  # every conductance drifted down by 20%
    drifted = run(model.forward(chip, x, batch=100))
    torch.testing.assert_close(drifted, 0.8 * linear(x).detach(), rtol=1e-5, atol=1e-5)
    factors = run(model.compensate(chip))
    assert factors == pytest.approx([1.25, 1.25])
    torch.testing.assert_close(
        run(model.forward(chip, x, batch=100)), linear(x).detach(), rtol=1e-5, atol=1e-5
    )
    model.uncompensated()
    torch.testing.assert_close(run(model.forward(chip, x, batch=100)), drifted)


def test_calibration_input_is_fixed_and_scaled_to_keep_outputs_in_range() -> None:
    a, b = calibration_input(37), calibration_input(37)
    assert a.shape == (CALIBRATION_VECTORS, 37) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {np.float32(-4 / 37**0.5), np.float32(4 / 37**0.5)}
    assert set(np.unique(calibration_input(9))) == {-1.0, 1.0}  # small blocks: full scale


# -- refusals ----------------------------------------------------------------------------


def test_a_model_needing_more_tiles_than_the_chip_has_names_both_numbers() -> None:
    digital = DigitalModel(torch.nn.Sequential(torch.nn.Linear(300, 20), torch.nn.ReLU()), (0,))
    with pytest.raises(ExperimentError) as info:
        ChipModel(digital, rows=16, cols=256, tiles=1, chip_name="the chip at tcp://h:1")
    text = str(info.value)
    assert "needs 4 tiles of 16x256" in text
    assert "the chip at tcp://h:1 has 1" in text
    assert "layer 0 (20x300): 4" in text
    assert "at least 4 tiles" in text and "analog: false" in text


def test_layers_that_are_not_matrix_products_are_refused() -> None:
    with pytest.raises(ExperimentError, match=r"model.layers.2: ReLU is not a matrix product"):
        layer_matrix(torch.nn.ReLU(), "model.layers.2")
    grouped = torch.nn.Conv2d(4, 4, 3, groups=2)
    with pytest.raises(ExperimentError, match="groups=1"):
        layer_matrix(grouped, "model.layers.0")
    digital = DigitalModel(torch.nn.Sequential(torch.nn.ReLU(), grouped), analog=(0, 1))
    with pytest.raises(ExperimentError) as info:
        ChipModel(digital, rows=8, cols=8, tiles=8)
    assert [path for path, _ in info.value.problems] == ["model.layers.0", "model.layers.1"]
    layer = ChipLayer(0, torch.nn.Linear(2, 2), [])
    with pytest.raises(TypeError, match="layer 0 runs on the chip"):
        layer(torch.zeros(1, 2))


# -- loading a model record --------------------------------------------------------------


def _bn_model() -> torch.nn.Sequential:
    spec = ModelSpec.model_validate(
        {
            "convert": "all",
            "layers": [
                "Flatten",
                {"type": "Linear", "out_features": 5},
                "BatchNorm1d",
                {"type": "Linear", "out_features": 3},
            ],
        }
    )
    return build_digital_model(spec, (1, 2, 2)).model


def test_loading_a_record_puts_every_tensor_in_place() -> None:
    source, target = _bn_model(), _bn_model()
    state = source.state_dict()
    state["2.running_mean"].fill_(0.5)  # a buffer, as training would leave it
    names = [n for n in state if not n.endswith("num_batches_tracked")]  # int64: not sent
    tensors = [state[n].numpy().astype(np.float32) for n in names]
    for t in tensors:
        t.setflags(write=False)  # as received: read-only buffers
    load_tensors(target, names, tensors)
    for name in names:
        torch.testing.assert_close(target.state_dict()[name], state[name])


def test_loading_a_record_reports_every_fault_and_changes_nothing() -> None:
    model = _bn_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = {k: v.numpy().astype(np.float32) for k, v in model.state_dict().items()}
    names = ["1.weight", "1.bias", "3.weight", "3.bias", "9.weight", "1.bias", "2.weight"]
    bad_bias = np.full(3, np.nan, dtype=np.float32)
    tensors = [
        np.zeros((5, 3), dtype=np.float32),  # mis-shaped: the model needs 5 x 4
        good["1.bias"],
        good["3.weight"],
        bad_bias,
        np.zeros(2, dtype=np.float32),
        good["1.bias"],
        good["2.weight"],
    ]
    with pytest.raises(ExperimentError) as info:
        load_tensors(model, names, tensors)
    problems = dict(info.value.problems)
    assert "the model record does not fit" in str(info.value)
    assert problems["tensors.1.weight"] == "has shape [5, 3] but the model needs [5, 4]"
    assert problems["tensors.3.bias"] == "holds NaN or infinite values"
    assert problems["names.9.weight"].startswith("is not a tensor of this model")
    assert problems["names.1.bias"].startswith("appears twice")
    assert problems["names.2.bias"].startswith("missing: the model needs a tensor of shape [5]")
    assert "names.2.running_mean" in problems and "names.2.running_var" in problems
    assert "names.2.num_batches_tracked" not in problems  # optional: only training uses it
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
    with pytest.raises(ExperimentError, match="2 tensors for 3 names"):
        load_tensors(model, ["1.weight", "1.bias", "3.weight"], [good["1.weight"], good["1.bias"]])


def test_a_model_that_cannot_be_built_says_which_layer() -> None:
    spec = ModelSpec.model_validate(
        {"convert": "all", "layers": [{"type": "Linear", "out_features": 3}]}
    )
    with pytest.raises(ExperimentError, match=r"model.layers.0: Linear gets a 1x8x8"):
        build_digital_model(spec, (1, 8, 8))
