"""A test-only source of MODEL records for the ``imc_chip`` AIM.

``ModelSource`` trains the digital model of an experiment for a few full-batch Adam
steps on its data set (a fraction of a second on digits) and sends the weights as the
simulator's ``models`` output would: a MODEL record, state-dict keys as names. It
reports the digital test accuracy, so a test can compare the chip's with it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch

from aif import AIM
from aif.aims.analog.datasets import load_dataset
from aif.aims.analog.imc_chip.twin import build_digital_model
from aif.aims.analog.records import MODEL_RECORD
from aif.aims.analog.spec import Experiment
from aif.aims.analog.training import evaluate


def model_record(
    experiment: dict[str, Any], steps: int, base_dir: Path, drop: list[str] | None = None
) -> tuple[dict[str, Any], float]:
    """A MODEL record of ``experiment`` trained digitally, and its digital test accuracy."""
    spec = Experiment.model_validate(experiment)
    data = load_dataset(spec.dataset, base_dir)
    torch.manual_seed(spec.training.seed)
    digital = build_digital_model(spec.model, data.sample_shape)
    model = digital.model
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    model.train()
    _adam(model, lambda: torch.nn.functional.cross_entropy(model(x), y), steps)
    model.eval()
    accuracy = evaluate(model, data.x_test, data.y_test, 256, torch.device("cpu"))
    state = model.state_dict()
    names = [n for n in state if not n.endswith("num_batches_tracked") and n not in (drop or [])]
    tensors = [np.array(state[n].detach().to(torch.float32).numpy()) for n in names]
    record = {
        "job": spec.name,
        "experiment": spec.name,
        "label": "",
        "source": "inline[0]",
        "spec": spec.model_dump_json(),
        "names": names,
        "tensors": tensors,
    }
    return record, accuracy


def _adam(model: torch.nn.Module, loss: Any, steps: int, lr: float = 0.02) -> None:
    """Full-batch Adam, written out: ``torch.optim`` would import torch._dynamo (~2 s)."""
    params = [p for p in model.parameters() if p.requires_grad]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        grads = torch.autograd.grad(loss(), params)
        with torch.no_grad():
            for p, g, m_, v_ in zip(params, grads, m, v, strict=True):
                m_.mul_(0.9).add_(g, alpha=0.1)
                v_.mul_(0.999).addcmul_(g, g, value=0.001)
                step = lr * (m_ / (1 - 0.9**t)) / ((v_ / (1 - 0.999**t)).sqrt() + 1e-8)
                p.sub_(step)


class ModelSource(AIM):
    """Trains an experiment's digital model briefly and sends it as a MODEL record."""

    outputs = {"models": MODEL_RECORD}

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        experiments: list[dict[str, Any]]
        steps: int = 60
        drop: list[str] = []

    async def run(self) -> None:
        assert isinstance(self.params, ModelSource.Params)
        for experiment in self.params.experiments:
            record, accuracy = await asyncio.to_thread(
                model_record, experiment, self.params.steps, self.base_dir, self.params.drop
            )
            await self.result(**{f"{record['job']}:digital": accuracy})
            await self.send("models", record)
