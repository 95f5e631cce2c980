"""A small analog experiment: scikit-learn's digits, classified on aihwkit tiles.

``digits-source`` emits the bundled 8x8 digits set (nothing is downloaded) as a train
and a test split; ``analog-classifier`` trains a two-layer network whose layers are
aihwkit analog tiles (hardware-aware training with PCM-like noise), reporting loss
and accuracy every epoch, then measures test accuracy after programming and after
conductance drift. It is the runtime core's end-to-end proof on real tiles; the full
experiment spec, validator and simulator AIMs build on the same pattern.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import numpy as np
import pydantic

from aif.aims.analog.spec import format_duration
from aif.aims.base import AIM
from aif.communication.ports import Record

_SPLIT = "{tensor<float32>[?,64] x; tensor<int64>[?] y}"


class DigitsParams(pydantic.BaseModel):
    """Parameters of ``digits-source``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    test_fraction: float = pydantic.Field(default=0.25, gt=0, lt=1)
    seed: int = 0


class DigitsSource(AIM):
    """Emits scikit-learn's bundled digits set, scaled to [0, 1], as train and test splits."""

    outputs = {"train": _SPLIT, "test": _SPLIT}
    Params = DigitsParams

    async def run(self) -> None:
        from sklearn.datasets import load_digits

        assert isinstance(self.params, DigitsParams)
        data = load_digits()
        x = (data.data / 16.0).astype(np.float32)
        y = data.target.astype(np.int64)
        order = np.random.default_rng(self.params.seed).permutation(len(y))
        cut = int(len(y) * (1 - self.params.test_fraction))
        train, test = order[:cut], order[cut:]
        await self.send("train", {"x": x[train], "y": y[train]})
        await self.send("test", {"x": x[test], "y": y[test]})
        await self.result(train=len(train), test=len(test))


class ClassifierParams(pydantic.BaseModel):
    """Parameters of ``analog-classifier``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    epochs: int = pydantic.Field(default=10, ge=1, le=1000)
    batch_size: int = pydantic.Field(default=32, ge=1)
    hidden: int = pydantic.Field(default=32, ge=1)
    lr: float = pydantic.Field(default=0.1, gt=0)
    device: Literal["pcm", "ideal"] = pydantic.Field(
        default="pcm", description="pcm: InferenceRPUConfig with PCM noise; ideal: floating point"
    )
    drift_seconds: list[float] = pydantic.Field(default=[1.0, 3600.0, 86400.0])
    seed: int = 0


class AnalogClassifier(AIM):
    """Trains an analog two-layer classifier on ``train``, evaluates on ``test`` with drift."""

    inputs = {"train": _SPLIT, "test": _SPLIT}
    outputs = {"metrics": "{int32 epoch; float64 loss; float64 accuracy}"}
    Params = ClassifierParams

    async def run(self) -> None:
        assert isinstance(self.params, ClassifierParams)
        splits: dict[str, dict[str, Any]] = {}
        async for event in self.events():
            if isinstance(event, Record):
                splits[event.port] = event.value
        if set(splits) != {"train", "test"}:
            raise ValueError(f"expected a train and a test split, got {sorted(splits)}")
        p = self.params
        model, optimizer = await asyncio.to_thread(self._build, p)
        for epoch in range(1, p.epochs + 1):
            if not await self.checkpoint():
                break
            start = time.perf_counter()
            loss = await asyncio.to_thread(self._epoch, model, optimizer, splits["train"], p, epoch)
            acc = await asyncio.to_thread(self._accuracy, model, splits["test"], None)
            await self.send("metrics", {"epoch": epoch, "loss": loss, "accuracy": acc})
            await self.progress(
                step=epoch,
                total=p.epochs,
                loss=loss,
                accuracy=acc,
                seconds=time.perf_counter() - start,
            )
        drift = {}
        for t in p.drift_seconds if p.device == "pcm" else []:
            accuracy = await asyncio.to_thread(self._accuracy, model, splits["test"], t)
            drift[f"acc@{format_duration(t)}"] = accuracy
        await self.result(accuracy=acc, **drift)

    @staticmethod
    def _build(p: ClassifierParams) -> tuple[Any, Any]:
        import torch
        from aihwkit.inference import PCMLikeNoiseModel
        from aihwkit.nn import AnalogLinear, AnalogSequential
        from aihwkit.optim import AnalogSGD
        from aihwkit.simulator.configs import FloatingPointRPUConfig, InferenceRPUConfig

        torch.manual_seed(p.seed)
        if p.device == "pcm":
            rpu: Any = InferenceRPUConfig()
            rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
            rpu.forward.out_noise = 0.02
        else:
            rpu = FloatingPointRPUConfig()
        model = AnalogSequential(
            AnalogLinear(64, p.hidden, rpu_config=rpu),
            torch.nn.ReLU(),
            AnalogLinear(p.hidden, 10, rpu_config=rpu),
        )
        optimizer = AnalogSGD(model.parameters(), lr=p.lr)
        optimizer.regroup_param_groups(model)
        return model, optimizer

    @staticmethod
    def _epoch(
        model: Any, optimizer: Any, split: dict[str, Any], p: ClassifierParams, epoch: int
    ) -> float:
        import torch

        model.train()
        x = torch.from_numpy(np.ascontiguousarray(split["x"]))
        y = torch.from_numpy(np.ascontiguousarray(split["y"]))
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(p.seed + epoch))
        total = 0.0
        for i in range(0, len(y), p.batch_size):
            idx = order[i : i + p.batch_size]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += loss.item() * len(idx)
        return total / len(y)

    @staticmethod
    def _accuracy(model: Any, split: dict[str, Any], drift_seconds: float | None) -> float:
        import torch

        model.eval()
        if drift_seconds is not None:
            model.drift_analog_weights(drift_seconds)
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(split["x"]))
            pred = model(x).argmax(dim=1).numpy()
        return float((pred == split["y"]).mean())
