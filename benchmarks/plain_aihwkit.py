"""The main job written by hand with aihwkit only: the baseline of ``benchmarks/overhead.py``.

Run: ``python benchmarks/plain_aihwkit.py [--epochs 10] [--repetitions 5] [--out DIR]``

What a researcher would write for ``workflows/experiments/hwa-cnn.yml`` without aif:
scikit-learn's digits split 75/25 by a seeded permutation and scaled to [0, 1], a
two-conv CNN with every layer on an ``InferenceRPUConfig`` tile (output noise 0.02,
additive Gaussian weight noise 0.05 while training, ``PCMLikeNoiseModel(g_max=25)``,
global drift compensation), ``AnalogSGD`` (lr 0.05, momentum 0.9) halved every 5
epochs, batches of 32 in an order drawn per epoch from a generator seeded by (seed,
epoch), test accuracy after every epoch, the weights saved, then test accuracy after
1 s, 1 h, 1 d and 1 y of drift over 5 programming draws, with and without
compensation. The settings are written out as constants, as one would by hand;
``overhead.py`` checks the shipped experiment against its copy of them before it
measures.

The last line printed is one JSON object: final and drift accuracies, and how long
each phase took inside this process (imports included, interpreter start not).
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (the clock starts before the imports it measures)
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel  # noqa: E402
from aihwkit.nn import AnalogConv2d, AnalogLinear, AnalogSequential  # noqa: E402
from aihwkit.optim import AnalogSGD  # noqa: E402
from aihwkit.simulator.configs import InferenceRPUConfig, WeightModifierType  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

IMPORTED = time.perf_counter()

SEED = 0
TEST_FRACTION = 0.25
BATCH_SIZE = 32
LR, MOMENTUM, STEP_SIZE, GAMMA = 0.05, 0.9, 5, 0.5
DRIFT_TIMES = [1.0, 3_600.0, 86_400.0, 31_536_000.0]  # 1 s, 1 h, 1 d, 1 y


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as (N, 1, 8, 8) in [0, 1]; 75 % train, 25 % test by a seeded permutation."""
    digits = load_digits()
    x = np.asarray(digits.images, dtype=np.float32)[:, None, :, :] / np.float32(16.0)
    y = np.asarray(digits.target, dtype=np.int64)
    order = np.random.default_rng(SEED).permutation(len(y))
    cut = int(len(y) * (1 - TEST_FRACTION))
    train, test = order[:cut], order[cut:]
    return (
        torch.from_numpy(x[train]),
        torch.from_numpy(y[train]),
        torch.from_numpy(x[test]),
        torch.from_numpy(y[test]),
    )


def rpu_config() -> InferenceRPUConfig:
    rpu = InferenceRPUConfig()
    rpu.forward.out_noise = 0.02
    rpu.modifier.type = WeightModifierType.ADD_NORMAL
    rpu.modifier.std_dev = 0.05
    rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
    rpu.drift_compensation = GlobalDriftCompensation()
    return rpu


def build_model(rpu: InferenceRPUConfig) -> AnalogSequential:
    return AnalogSequential(
        AnalogConv2d(1, 16, kernel_size=3, padding=1, rpu_config=rpu),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        AnalogConv2d(16, 32, kernel_size=3, padding=1, rpu_config=rpu),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        AnalogLinear(32 * 2 * 2, 10, rpu_config=rpu),
    )


def test_accuracy(model: AnalogSequential, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for lo in range(0, len(y), BATCH_SIZE):
            out = model(x[lo : lo + BATCH_SIZE])
            correct += int((out.argmax(dim=1) == y[lo : lo + BATCH_SIZE]).sum())
    return correct / len(y)


def main() -> int:
    parser = argparse.ArgumentParser(description="hwa-cnn by hand with aihwkit")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repetitions", type=int, default=5, help="programming draws")
    parser.add_argument("--out", default=None, help="folder for the weights (default: a temp)")
    args = parser.parse_args()
    clock = [IMPORTED]

    def lap() -> float:
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]

    x_train, y_train, x_test, y_test = load_data()
    t_data = lap()

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    model = build_model(rpu_config())
    optimizer = AnalogSGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    optimizer.regroup_param_groups(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=STEP_SIZE, gamma=GAMMA)
    t_build = lap()

    accuracy = float("nan")
    for epoch in range(1, args.epochs + 1):
        model.train()
        # Each epoch's order from its own generator seeded by (seed, epoch), as aif draws
        # it: the accuracy after raw (uncompensated) drift depends strongly on the order.
        order = torch.from_numpy(np.random.default_rng([SEED, epoch]).permutation(len(y_train)))
        total = 0.0
        for lo in range(0, len(order), BATCH_SIZE):
            index = order[lo : lo + BATCH_SIZE]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[index]), y_train[index])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += loss.item() * len(index)
        scheduler.step()
        accuracy = test_accuracy(model, x_test, y_test)
        print(f"epoch {epoch:2d}  loss {total / len(y_train):.4f}  test accuracy {accuracy:.4f}")
    t_train = lap()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), folder / "hwa-cnn.pt")
    t_save = lap()

    # Drift: program the trained weights (a fresh draw each repetition), let them drift,
    # test without compensation (switched off per tile) and with it.
    tiles = list(model.analog_tiles())
    compensations = [tile.rpu_config.drift_compensation for tile in tiles]
    raw: list[list[float]] = [[] for _ in DRIFT_TIMES]
    compensated: list[list[float]] = [[] for _ in DRIFT_TIMES]
    torch.manual_seed(SEED)
    model.eval()
    for _ in range(args.repetitions):
        model.program_analog_weights()
        for k, t_inference in enumerate(DRIFT_TIMES):
            model.drift_analog_weights(t_inference)
            for tile in tiles:
                tile.rpu_config.drift_compensation = None
            raw[k].append(test_accuracy(model, x_test, y_test))
            for tile, compensation in zip(tiles, compensations, strict=True):
                tile.rpu_config.drift_compensation = compensation
            compensated[k].append(test_accuracy(model, x_test, y_test))
    t_drift = lap()
    for t_inference, r, c in zip(DRIFT_TIMES, raw, compensated, strict=True):
        print(
            f"drift {t_inference:>10.0f} s  accuracy {np.mean(r):.4f} +- {np.std(r):.4f}"
            f"  compensated {np.mean(c):.4f} +- {np.std(c):.4f}"
        )
    phases = {
        "imports": IMPORTED - STARTED,
        "data": t_data,
        "build": t_build,
        "train": t_train,
        "save": t_save,
        "drift": t_drift,
        "total": time.perf_counter() - STARTED,
    }
    result = {
        "accuracy": accuracy,
        "drift_mean": [float(np.mean(r)) for r in raw],
        "drift_mean_compensated": [float(np.mean(c)) for c in compensated],
        "seconds": {k: round(v, 3) for k, v in phases.items()},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
