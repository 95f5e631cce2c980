"""The nested and sequence layers of a layer list: build, train, checkpoint, drift.

Each model is built from its YAML layer list with the sizes inferred, trains two
batches of tiny generated data, survives a checkpoint into a freshly built model and
drifts. The validator's refusals of these layers are pinned by the corpus
(``tests/experiments/invalid-residual-*.yml``, ``invalid-lstm-*.yml``, ...).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from aihwkit.nn import AnalogLinear

from aif.aims.analog import spec as s
from aif.aims.analog.build import build_model, build_rpu_config
from aif.aims.analog.checkpoint import load_weights, save_weights, weights_dict
from aif.aims.analog.layers import layer_step
from aif.errors import ExperimentError

LINEAR3 = {"type": "Linear", "out_features": 3}
#: name -> (model section, sample shape, integer tokens below this, or 0 for floats)
MODELS: dict[str, tuple[dict[str, Any], tuple[int, ...], int]] = {
    "resnet-block": (
        {
            "convert": "all",
            "layers": [
                {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
                "ReLU",
                {
                    "type": "Residual",
                    "layers": [
                        {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
                        "BatchNorm2d",
                        {"type": "LeakyReLU", "negative_slope": 0.1},
                    ],
                },
                {
                    "type": "Residual",
                    "shortcut": "projection",
                    "layers": [
                        {
                            "type": "Conv2d",
                            "out_channels": 6,
                            "kernel_size": 3,
                            "stride": 2,
                            "padding": 1,
                        },
                        "GELU",
                    ],
                },
                {"type": "AdaptiveAvgPool2d", "output_size": 1},
                "Flatten",
                LINEAR3,
            ],
        },
        (2, 8, 8),
        0,
    ),
    "conv1d": (
        {
            "convert": "all",
            "layers": [
                {"type": "Conv1d", "out_channels": 4, "kernel_size": 3},
                "ELU",
                {"type": "MaxPool1d", "kernel_size": 2},
                {
                    "type": "Sequential",
                    "layers": [
                        {"type": "Conv1d", "out_channels": 4, "kernel_size": 2},
                        {"type": "AvgPool1d", "kernel_size": 2},
                    ],
                },
                "Flatten",
                {
                    "type": "Residual",
                    "shortcut": "projection",
                    "layers": [{"type": "Linear", "out_features": 5}, "Tanh"],
                },
                LINEAR3,
            ],
        },
        (2, 12),
        0,
    ),
    "lstm": (
        {
            "convert": "all",
            "layers": [
                {"type": "LSTM", "hidden_size": 4, "num_layers": 2, "last": False},
                {"type": "GRU", "hidden_size": 3, "bidirectional": True},
                LINEAR3,
            ],
        },
        (5, 6),
        0,
    ),
    "embedding-rnn": (
        {
            "convert": "all",
            "layers": [
                {"type": "Embedding", "num_embeddings": 10, "embedding_dim": 4},
                {"type": "RNN", "hidden_size": 4},
                LINEAR3,
            ],
        },
        (7,),
        10,
    ),
    "digital-lstm": (
        {
            "convert": "all",
            "layers": [
                {"type": "LSTM", "hidden_size": 4, "analog": False, "bidirectional": True},
                LINEAR3,
            ],
        },
        (5, 6),
        0,
    ),
}

RPU = s.RPUSpec(config="InferenceRPUConfig", noise_model="PCMLikeNoiseModel")


def _data(shape: tuple[int, ...], tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randint(0, tokens, (8, *shape)).float() if tokens else torch.randn(8, *shape)
    return x, torch.randint(0, 3, (8,))


def _build(model: dict[str, Any], shape: tuple[int, ...]) -> torch.nn.Module:
    rpu = build_rpu_config(RPU)
    return build_model(s.ModelSpec.model_validate(model), rpu, shape)


@pytest.mark.parametrize("name", list(MODELS))
def test_each_block_model_trains_checkpoints_and_drifts(name: str) -> None:
    from aihwkit.optim import AnalogSGD

    model_spec, shape, tokens = MODELS[name]
    model = _build(model_spec, shape)
    x, y = _data(shape, tokens)
    optimizer = AnalogSGD(model.parameters(), lr=0.05)
    optimizer.regroup_param_groups(model)
    model.train()
    for batch in (slice(0, 4), slice(4, 8)):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        assert torch.isfinite(loss)

    again = _build(model_spec, shape)
    load_weights(again, save_weights(model))
    before, after = weights_dict(model), weights_dict(again)
    assert before.keys() == after.keys()
    assert all(torch.allclose(v, after[k]) for k, v in before.items())
    again.eval()
    again.program_analog_weights()  # type: ignore[operator]
    again.drift_analog_weights(86_400.0)  # type: ignore[operator]
    assert torch.isfinite(again(x)).all()


def test_block_layers_take_their_dotted_rpu_layer_configurations() -> None:
    model = {
        "convert": "all",
        "layers": [
            {"type": "Linear", "out_features": 4},
            {"type": "Sequential", "layers": ["ReLU", {"type": "Linear", "out_features": 4}]},
            {"type": "Residual", "shortcut": "projection", "layers": [LINEAR3]},
        ],
    }
    assert s.ModelSpec.model_validate(model).analog_names() == ["0", "1.1", "2.0", "2.shortcut"]
    rpu = RPU.model_copy(update={"layers": {"1.1": s.RPUSpec(config="TorchInferenceRPUConfig")}})
    net = build_model(s.ModelSpec.model_validate(model), build_rpu_config(rpu), (6,))
    configs = {
        name: type(next(module.analog_tiles()).rpu_config).__name__
        for name, module in net.named_modules()
        if isinstance(module, AnalogLinear)
    }
    assert configs == {
        "0": "InferenceRPUConfig",
        "1.1": "TorchInferenceRPUConfig",
        "2.body.0": "InferenceRPUConfig",
        "2.shortcut": "InferenceRPUConfig",
    }


def test_a_residual_that_changes_the_shape_needs_a_projection() -> None:
    block = s.Residual(layers=[s.Linear(out_features=5)])
    problems: list[tuple[str, str]] = []
    assert layer_step(block, (6,), "model.layers.2", problems) == ((5,), None)
    assert problems == [
        (
            "model.layers.2",
            "the Residual block's layers turn 6 features into 5 features, which cannot be "
            "added to its input; set 'shortcut: projection'",
        )
    ]


@pytest.mark.parametrize(
    ("layer", "shape", "where", "text"),
    [
        (
            s.LSTM(hidden_size=3),
            (1, 8, 8),
            "model.layers.0",
            "LSTM needs a sequence (time x features)",
        ),
        (
            s.Conv1d(out_channels=2, kernel_size=3),
            (8,),
            "model.layers.0",
            "Conv1d needs a sequence",
        ),
        (
            s.Conv1d(out_channels=2, kernel_size=9),
            (2, 8),
            "model.layers.0.kernel_size",
            "is 9 but its input is 8 long",
        ),
        (s.MaxPool1d(kernel_size=2, padding=2), (2, 8), "model.layers.0.padding", "at most half"),
        (
            s.Embedding(num_embeddings=3, embedding_dim=2),
            (2, 8),
            "model.layers.0",
            "integer tokens",
        ),
        (s.AdaptiveAvgPool2d(), (8,), "model.layers.0", "needs an image"),
        (
            s.Residual(shortcut="projection", layers=[s.Flatten()]),
            (2, 4, 4),
            "model.layers.0.shortcut",
            "no 1x1 projection turns",
        ),
    ],
)
def test_each_misfit_is_refused_with_the_field_and_the_fix(
    layer: Any, shape: tuple[int, ...], where: str, text: str
) -> None:
    problems: list[tuple[str, str]] = []
    layer_step(layer, shape, "model.layers.0", problems)
    assert [p for p, _ in problems] == [where]
    assert text in problems[0][1]


def test_an_inner_misfit_names_its_dotted_place() -> None:
    model = s.ModelSpec.model_validate(
        {"convert": "all", "layers": [{"type": "Sequential", "layers": ["ReLU", LINEAR3]}]}
    )
    with pytest.raises(ExperimentError) as caught:
        build_model(model, build_rpu_config(RPU), (1, 4, 4))
    assert [p for p, _ in caught.value.problems] == ["model.layers.0.layers.1"]
