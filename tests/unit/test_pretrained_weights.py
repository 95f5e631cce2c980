"""Pre-trained digital weights (``model.weights``): safetensors and npz in, pickles and
mismatches refused with the field and the fix, before anything trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from aif.aims.analog import spec as s
from aif.aims.analog.torch_models import digital_model
from aif.aims.analog.validator import review_experiment
from aif.errors import ExperimentError

MLP = {"zoo": "mlp", "args": {"hidden": [16]}}


def _state(**args: Any) -> dict[str, torch.Tensor]:
    spec = s.ModelSpec.model_validate({**MLP, "args": {**MLP["args"], **args}})
    torch.manual_seed(7)
    return {k: v.clone() for k, v in digital_model(spec, (1, 8, 8), 10).state_dict().items()}


def _model(weights: Path) -> torch.nn.Module:
    return digital_model(
        s.ModelSpec.model_validate({**MLP, "weights": str(weights)}), (1, 8, 8), 10
    )


def _problems(weights: Path) -> list[tuple[str, str]]:
    with pytest.raises(ExperimentError) as info:
        _model(weights)
    return info.value.problems


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_weights_load_before_conversion(tmp_path: Path, suffix: str) -> None:
    state = _state()
    path = tmp_path / f"w{suffix}"
    if suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in state.items()})
    else:
        save_file(state, str(path))
    loaded = _model(path).state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_an_experiment_with_weights_may_skip_training_and_drifts(tmp_path: Path) -> None:
    save_file(_state(), str(tmp_path / "w.safetensors"))
    raw = {
        "name": "pretrained",
        "dataset": {"name": "digits", "batch_size": 64},
        "model": {**MLP, "weights": "w.safetensors"},
        "rpu": {"config": "TorchInferenceRPUConfig", "noise_model": "PCMLikeNoiseModel"},
        "training": {"epochs": 0},
        "inference": {"drift_times": [1.0], "repetitions": 1},
    }
    verdict = review_experiment(raw, tmp_path)
    assert verdict.accepted, verdict.problems
    assert raw["model"]["weights"] == "w.safetensors"  # the caller's copy is untouched
    assert verdict.experiment is not None
    assert verdict.experiment.model.weights == str(tmp_path / "w.safetensors")
    without = review_experiment({**raw, "model": MLP}, tmp_path)
    assert any("model.weights" in message for _, message in without.problems)


def test_a_pickle_is_refused_with_the_conversion(tmp_path: Path) -> None:
    path = tmp_path / "resnet9s.th"
    path.write_bytes(b"\x80\x04not read")
    (where, message), *_ = _problems(path)
    assert where == "model.weights" and "pickle" in message and "safetensors" in message


def test_mismatched_keys_and_shapes_name_them(tmp_path: Path) -> None:
    state = _state(hidden=[32])
    state["extra.weight"] = torch.zeros(1)
    del state["1.bias"]
    save_file(state, str(tmp_path / "w.safetensors"))
    text = " | ".join(m for _, m in _problems(tmp_path / "w.safetensors"))
    assert "lacks 1 key(s): 1.bias" in text
    assert "extra.weight" in text and "wrong shape: 1.weight (32, 64)" in text
    assert "check model.args" in text


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("w.npz", b"PK\x03\x04 truncated", "cannot be read"),
        ("w.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", "not a valid"),
        ("w.bin", b"", "give a .safetensors or .npz"),
    ],
)
def test_corrupt_or_unknown_files_are_refused(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    (tmp_path / name).write_bytes(content)
    assert expected in _problems(tmp_path / name)[0][1]


def test_object_arrays_and_missing_files_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "o.npz", w=np.array(["a", "b"]))
    assert "not numbers" in _problems(tmp_path / "o.npz")[0][1]
    assert "no file" in _problems(tmp_path / "absent.npz")[0][1]


def test_weights_are_only_for_zoo_and_torch_models() -> None:
    with pytest.raises(ValueError, match="'weights' is for 'zoo' and 'torch' models"):
        s.ModelSpec.model_validate(
            {
                "layers": ["Flatten", {"type": "Linear", "out_features": 2, "analog": True}],
                "weights": "w.npz",
            }
        )
