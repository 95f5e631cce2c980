"""Zoo models and a user's torch model, end to end: build, train, checkpoint, drift.

Each runs one tiny epoch on generated data through the simulator's own job runner, so
``convert_to_analog``'s models are proven to work with training, checkpoints and drift
inference, not only to build. The validator's refusals are pinned by the corpus
(``tests/experiments/invalid-torch-*.yml``, ``invalid-zoo-*.yml``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from aif.aims.analog import spec as s
from aif.aims.analog.build import build_model, build_rpu_config
from aif.aims.analog.runs import JobOutcome, JobRunner
from aif.aims.analog.validator import review_experiment
from aif.aims.analog.zoo import ZOO, ZOO_NAMES
from aif.errors import ExperimentError
from aif.storage.local import LocalStorage

ROOT = Path(__file__).resolve().parents[2]
#: (model section, synthetic image channels): tiny widths so each runs in a blink.
MODELS: dict[str, tuple[dict[str, Any], int]] = {
    "mlp": ({"zoo": "mlp", "args": {"hidden": [8, 8], "activation": "tanh"}}, 1),
    "lenet5": ({"zoo": "lenet5", "args": {"channels": [2, 3], "hidden": 8}}, 1),
    "vgg8": ({"zoo": "vgg8", "args": {"width": 2, "hidden": 8}}, 3),
    "resnet-A": ({"zoo": "resnet", "args": {"depth": 20, "width": 2}}, 3),
    "resnet-B": ({"zoo": "resnet", "args": {"width": 2, "shortcut": "B"}}, 3),
    "lstm": ({"zoo": "lstm", "args": {"hidden": 4, "layers": 2, "embed": 6}}, 1),
    "torch": (
        {"torch": "tests.helpers.torch_models:TinyNet", "args": {"classes": 3, "width": 2}},
        1,
    ),
    "torch-factory": (
        {
            "torch": "tests.helpers.torch_models:tiny_mlp",
            "args": {"inputs": 64, "classes": 3},
            "exclude": ["1"],
        },
        1,
    ),
}


def _experiment(model: dict[str, Any], channels: int, **more: Any) -> s.Experiment:
    raw = {
        "name": "zoo-test",
        "dataset": {
            "name": "synthetic",
            "channels": channels,
            "classes": 3,
            "samples": 40,
            "image_size": 8,
            "batch_size": 16,
            "max_test": 8,
        },
        "model": model,
        "rpu": {"config": "TorchInferenceRPUConfig", "noise_model": "PCMLikeNoiseModel"},
        "training": {"epochs": 1},
        "inference": {"drift_times": [1.0, 86_400.0], "repetitions": 1},
        **more,
    }
    return s.Experiment.model_validate(raw)


@pytest.mark.parametrize("name", list(MODELS))
def test_each_model_validates_trains_checkpoints_and_drifts(name: str, tmp_path: Path) -> None:
    model, channels = MODELS[name]
    experiment = _experiment(model, channels, checkpoint="trained")
    # the job's spec is the experiment dumped with every default written and parsed again
    job = s.Experiment.model_validate_json(experiment.job("").model_dump_json())
    verdict = review_experiment(job.model_dump(mode="json"), ROOT)
    assert verdict.accepted, verdict.problems

    runner = JobRunner(LocalStorage(tmp_path), ROOT)
    prepared = runner.prepare(job, JobOutcome("j", "zoo-test", "", "cpu"))
    assert prepared.drift_capable
    epoch = prepared.epoch(1)
    while not epoch.step(60.0):
        pass
    assert math.isfinite(epoch.loss) and epoch.batches == epoch.total_batches
    assert 0.0 <= prepared.evaluate() <= 1.0
    prepared.save_checkpoint("trained")
    assert not prepared.drift(lambda: False)
    assert len(prepared.outcome.drift_mean) == 2 == len(prepared.outcome.drift_mean_compensated)

    # inference only, from the checkpoint, in a freshly built model
    again = job.model_copy(
        update={
            "load_checkpoint": "trained",
            "checkpoint": None,
            "training": s.TrainingSpec(epochs=0),
        }
    )
    loaded = runner.prepare(again, JobOutcome("j2", "zoo-test", "", "cpu"))
    before = {k: v for k, v in prepared.model.state_dict().items() if k.endswith("weight")}
    after = loaded.model.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items() if k in after)


def test_exclude_keeps_the_named_modules_digital() -> None:
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    experiment = _experiment(MODELS["torch"][0] | {"exclude": ["fc*"]}, 1)
    model = build_model(experiment.model, build_rpu_config(s.RPUSpec()), (1, 8, 8), classes=3)
    assert isinstance(model.conv, AnalogConv2d)
    assert type(model.fc1) is torch.nn.Linear and type(model.fc2) is torch.nn.Linear
    assert not isinstance(model.fc1, AnalogLinear)


@pytest.mark.parametrize(("depth", "convs"), [(20, 19), (32, 31), (56, 55)])
def test_resnet_depth_counts_the_weighted_layers(depth: int, convs: int) -> None:
    from aif.aims.analog.zoo import ResNetArgs, resnet

    model = resnet(ResNetArgs(depth=depth, width=1), (3, 8, 8), 10)
    found = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert found == convs  # + the Linear: depth weighted layers (option A adds none)


def test_the_lstm_zoo_model_runs_on_aihwkit_lstm_cells() -> None:
    from aihwkit.nn import AnalogLinear, AnalogLSTMCell

    spec = s.ModelSpec(zoo="lstm", args={"hidden": 3})
    model = build_model(spec, build_rpu_config(s.RPUSpec()), (1, 4, 5), classes=2)
    cells = [m for m in model.modules() if isinstance(m, AnalogLSTMCell)]
    assert cells and all(isinstance(c.weight_ih, AnalogLinear) for c in cells)
    assert model(torch.zeros(2, 1, 4, 5)).shape == (2, 2)


def test_a_zoo_model_too_big_for_the_images_is_refused() -> None:
    experiment = _experiment({"zoo": "vgg8", "args": {"width": 2}}, 1)
    raw = experiment.model_dump(mode="json")
    raw["dataset"]["image_size"] = 4
    problems = review_experiment(raw, ROOT).problems
    assert problems == [
        (
            "model.zoo",
            "vgg8 needs images of at least 8x8, not 4x4; use larger images or another model",
        )
    ]


def test_convert_is_for_layer_lists_only() -> None:
    with pytest.raises(ValueError, match="'convert' is for 'layers'"):
        s.ModelSpec(zoo="mlp", convert="all")
    with pytest.raises(ValueError, match="'args' is for 'zoo' and 'torch' models"):
        s.ModelSpec(layers=[s.Linear(out_features=2, analog=True)], args={"a": 1})


def test_the_imc_chip_refuses_models_it_cannot_map() -> None:
    from aif.aims.analog.imc_chip.twin import build_digital_model

    with pytest.raises(ExperimentError) as info:
        build_digital_model(s.ModelSpec(zoo="mlp"), (1, 8, 8))
    assert info.value.problems == [
        ("model", "a zoo model cannot be mapped onto the chip; use 'layers'")
    ]


def test_the_reference_describes_every_zoo_model_and_argument() -> None:
    doc = (ROOT / "docs" / "experiments.md").read_text()
    missing = [f"zoo {name}" for name in ZOO_NAMES if f"`{name}`" not in doc]
    missing += [
        f"{name}.{arg}"
        for name, (args, _) in ZOO.items()
        for arg in args.model_fields
        if f"`{arg}`" not in doc
    ]
    missing += [f"model.{f}" for f in s.ModelSpec.model_fields if f"`{f}`" not in doc]
    assert not missing, missing
