"""aihwkit's examples as aif experiments (``examples/aihwkit/``), each checked and run.

Every experiment in every file is reviewed by the validator and then runs one epoch of
a few batches in-process through the simulator's own job runner, on tiny generated data
of the original's shape (MNIST 1x28x28, CIFAR-10 / SVHN 3x32x32; sequence sets as short
sequences of the same features; War and Peace as a short generated text; the two-sample
regression sets ship with the examples and are used as they are). Experiments that load
a checkpoint run after the experiment that keeps it, in the same storage. The full-size
runs are described in docs/aihwkit-examples.md.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aif.aims.analog import spec as s
from aif.aims.analog.experiments import anchor_paths, read_experiment_file
from aif.aims.analog.runs import JobOutcome, JobRunner
from aif.aims.analog.validator import review_experiment
from aif.storage.local import LocalStorage

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "examples" / "aihwkit"
FILES = sorted(FOLDER.glob("*.yaml"))
#: The data files that ship with the examples (the others are the user's).
SHIPPED = set((FOLDER / "data").glob("*.npz"))
DOC = ROOT / "docs" / "aihwkit-examples.md"

#: (channels, image side) of the generated stand-in for each downloaded data set.
IMAGE_SETS = {"idx": (1, 28), "cifar10": (3, 32), "svhn": (3, 32)}


def _entries(path: Path) -> list[dict[str, Any]]:
    entries = read_experiment_file(path)
    for raw in entries:
        anchor_paths(raw, path.parent)
    return entries


#: A short stand-in for War and Peace: 239 characters, 19 windows of 12.
TEXT = "Well, Prince, so Genoa and Lucca are now just family estates of the Buonapartes. " * 3
#: Windows of generated text and time steps of generated sequences.
STEPS = 12


def _sequences(data: dict[str, Any], folder: Path) -> Path | None:
    """A generated npz of 16 short regression sequences like ``data``'s, if it holds any."""
    path = Path(data["path"])
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        split = "_train" if "x_train" in arrays.files else ""
        x, y = arrays[f"x{split}"], arrays[f"y{split}"]
    if x.ndim != 3 or y.dtype.kind != "f":
        return None
    rng = np.random.default_rng(0)
    tiny = folder / f"{path.stem}-tiny.npz"
    steps = min(x.shape[1], STEPS)
    np.savez(
        tiny,
        x=rng.random((16, steps, *x.shape[2:]), dtype=np.float32),
        y=rng.random((16, *y.shape[1:]), dtype=np.float32),
    )
    return tiny


def _stand_in_weights(raw: dict[str, Any], folder: Path) -> Path:
    """A safetensors file of the state dict of ``raw``'s model as it is built, untrained."""
    from safetensors.torch import save_file

    from aif.aims.analog.torch_models import digital_model

    spec = s.ModelSpec.model_validate({k: v for k, v in raw["model"].items() if k != "weights"})
    model = digital_model(spec, (3, 32, 32), 10)
    path = folder / "stand-in.safetensors"
    save_file({k: v.clone() for k, v in model.state_dict().items()}, str(path))
    return path


def _tiny(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``raw`` on a few generated samples, one epoch, one drift point and draw."""
    raw = copy.deepcopy(raw)
    data = raw["dataset"]
    kind = "svhn" if str(data.get("path", "")).endswith("svhn.npz") else data["name"]
    if kind == "text":
        text = folder / "war-and-peace-tiny.txt"
        text.write_text(TEXT, encoding="utf-8")
        data.update(path=str(text), sequence_length=STEPS, batch_size=8, max_test=8)
    elif kind == "npz":
        sequences = _sequences(data, folder)
        if sequences is not None:
            data.update(path=str(sequences), batch_size=8)
    if kind in IMAGE_SETS:
        channels, side = IMAGE_SETS[kind]
        keep = {k: data[k] for k in ("normalize", "augment") if k in data}
        raw["dataset"] = {
            "name": "synthetic",
            "channels": channels,
            "image_size": side,
            "classes": 10,
            "samples": 16,
            "batch_size": 8,
            "max_test": 8,
            **keep,
        }
    weights = raw.get("model", {}).get("weights")
    if weights:  # the user's download: random weights of the same model stand in
        raw["model"]["weights"] = str(_stand_in_weights(raw, folder))
    training = raw.setdefault("training", {})
    training["epochs"] = min(training.get("epochs", 10), 1)
    inference = raw.get("inference")
    if inference:
        inference["drift_times"] = [1.0]
        inference["repetitions"] = 1
        if "calibrate" in inference:
            inference["calibrate"]["batches"] = 1
    return raw


def _all() -> dict[str, tuple[Path, dict[str, Any]]]:
    return {raw["name"]: (path, raw) for path in FILES for raw in _entries(path)}


EXPERIMENTS = _all()


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> LocalStorage:
    return LocalStorage(tmp_path_factory.mktemp("aihwkit-examples"))


def _run(name: str, runner: JobRunner, done: set[str], folder: Path) -> None:
    """Review and run experiment ``name`` tiny, after the one whose checkpoint it loads."""
    if name in done:
        return
    _, raw = EXPERIMENTS[name]
    wanted = raw.get("load_checkpoint")
    if wanted:
        producer = [n for n, (_, r) in EXPERIMENTS.items() if r.get("checkpoint") == wanted]
        assert producer, f"{name}: nothing keeps checkpoint {wanted!r}"
        _run(producer[0], runner, done, folder)
    tiny = _tiny(raw, folder)
    verdict = review_experiment(tiny, ROOT)
    assert verdict.accepted, verdict.problems
    job = s.Experiment.model_validate(tiny).job("")
    prepared = runner.prepare(job, JobOutcome(name, name, "", "cpu"))
    if job.training.epochs:
        epoch = prepared.epoch(1)
        while not epoch.step(60.0):
            pass
        assert math.isfinite(epoch.loss)
        assert epoch.batches == epoch.total_batches
        prepared.end_epoch()
    prepared.full_precision()
    assert math.isfinite(prepared.evaluate())
    if job.inference is not None:
        if job.inference.calibrate is not None:
            assert prepared.calibrate() >= 1
        if prepared.drift_capable:
            assert not prepared.drift(lambda: False)
            assert len(prepared.outcome.drift_mean) == 1
    if job.checkpoint:
        prepared.save_checkpoint(job.checkpoint)
    done.add(name)


_DONE: set[str] = set()


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_example_is_accepted_and_runs_a_few_batches(
    name: str, storage: LocalStorage, tmp_path: Path
) -> None:
    _run(name, JobRunner(storage, ROOT), _DONE, tmp_path)


def test_the_shipped_regression_examples_pass_the_validator_as_they_are() -> None:
    shipped = [
        name
        for name, (_, raw) in EXPERIMENTS.items()
        if raw["dataset"]["name"] == "npz" and Path(raw["dataset"]["path"]) in SHIPPED
    ]
    assert "aihwkit-15-simple-rnn-gru" in shipped
    for name in shipped:
        verdict = review_experiment(EXPERIMENTS[name][1], ROOT)
        assert verdict.accepted, (name, verdict.problems)


def test_the_nested_devices_are_the_examples_own() -> None:
    from aif.aims.analog.build import build_rpu_config

    def rpu(name: str) -> Any:
        return build_rpu_config(s.Experiment.model_validate(EXPERIMENTS[name][1]).rpu)

    mixed = rpu("aihwkit-12-simple-layer-mixed-precision")
    assert type(mixed.device.device).__name__ == "SoftBoundsDevice"
    vector = rpu("aihwkit-07-simple-layer-other-devices").device
    assert vector.unit_cell_devices[0].w_max == 0.3
    assert vector.update_policy.name == "SINGLE_RANDOM"


def test_the_map_names_every_example_and_every_file() -> None:
    doc = DOC.read_text()
    rows = set(re.findall(r"^\| (\d\d) \|", doc, flags=re.M))
    assert rows == {f"{n:02d}" for n in range(1, 37)}
    missing = [p.name for p in FILES if f"`{p.name}`" not in doc]
    assert not missing, missing
    assert "docs/aihwkit-examples.md" in (ROOT / "README.md").read_text()
