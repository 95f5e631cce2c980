"""Real data sets from local files (CIFAR binaries, .npz, image folders), 3-channel
synthetic data, augmentation, per-channel normalisation and the validation split.

Every fixture file is written into ``tmp_path`` by the test that reads it: tiny CIFAR
binaries, ``.npz`` archives and PNGs, never a real download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aif.aims.analog.augment import augmentation, batch_generator, random_crop, random_flip
from aif.aims.analog.datasets import load_dataset
from aif.aims.analog.spec import AugmentSpec, DatasetSpec
from aif.aims.analog.validator import review_experiment
from aif.errors import ExperimentError


def spec(**fields: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(fields)


def cifar_records(n: int, labels: int, seed: int = 0, top: int = 10) -> bytes:
    """``n`` CIFAR records with ``labels`` label bytes each, labels below ``top``."""
    rng = np.random.default_rng(seed)
    heads = rng.integers(0, top, (n, labels), dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    return np.concatenate([heads, pixels], axis=1).tobytes()


def write_cifar10(folder: Path, per_batch: int = 6, batches: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, batches + 1):
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_records(per_batch, 1, seed=i))
    (folder / "test_batch.bin").write_bytes(cifar_records(4, 1, seed=99))
    return folder


def write_png_folder(root: Path, classes: dict[str, int], size: int = 10) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size, size + 2, 3), dtype=np.uint8)
            Image.fromarray(pixels, "RGB").save(root / name / f"{i}.png")
    return root


def path_problems(data: DatasetSpec, base: Path) -> list[tuple[str, str]]:
    with pytest.raises(ExperimentError) as caught:
        load_dataset(data, base)
    return caught.value.problems


# -- CIFAR --------------------------------------------------------------------------------


def test_cifar10_binary_batches_are_read_as_3x32x32(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "c10")
    data = load_dataset(spec(name="cifar10", path="c10", normalize="none"), tmp_path)
    assert data.x_train.shape == (12, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert data.classes == 10 and data.sample_shape == (3, 32, 32)
    raw = np.frombuffer(cifar_records(6, 1, seed=1), np.uint8).reshape(6, -1)
    np.testing.assert_array_equal(data.y_train[:6], raw[:, 0])
    np.testing.assert_array_equal(data.x_train[0].ravel(), raw[0, 1:].astype(np.float32))


def test_cifar10_archive_folder_below_the_path_is_found(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-bin")
    data = load_dataset(spec(name="cifar10", path=str(tmp_path)), Path("/"))
    assert len(data.y_train) == 12 and data.x_train.max() <= 1.0  # unit: bytes / 255


@pytest.mark.parametrize(("label", "column", "classes"), [("fine", 1, 100), ("coarse", 0, 20)])
def test_cifar100_fine_or_coarse_labels(
    tmp_path: Path, label: str, column: int, classes: int
) -> None:
    (tmp_path / "train.bin").write_bytes(cifar_records(5, 2, seed=1, top=20))
    (tmp_path / "test.bin").write_bytes(cifar_records(3, 2, seed=2, top=20))
    data = load_dataset(spec(name="cifar100", path=".", label=label), tmp_path)
    raw = np.frombuffer(cifar_records(5, 2, seed=1, top=20), np.uint8).reshape(5, -1)
    np.testing.assert_array_equal(data.y_train, raw[:, column])
    assert data.classes == classes and data.x_train.shape == (5, 3, 32, 32)


def test_truncated_cifar_file_names_itself_and_the_record_size(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    raw = (folder / "data_batch_2.bin").read_bytes()
    (folder / "data_batch_2.bin").write_bytes(raw[:-100])
    [(where, message)] = path_problems(spec(name="cifar10", path="c10"), tmp_path)
    assert where == "dataset.path"
    assert "data_batch_2.bin" in message and "3073-byte cifar10 records" in message
    assert "truncated" in message


def test_missing_cifar_files_and_folder(tmp_path: Path) -> None:
    (tmp_path / "c10").mkdir()
    (tmp_path / "c10" / "readme.txt").write_text("x")
    [(_, message)] = path_problems(spec(name="cifar10", path="c10"), tmp_path)
    assert "data_batch_*.bin and test_batch.bin missing" in message and "readme.txt" in message
    [(_, message)] = path_problems(spec(name="cifar100", path="nowhere"), tmp_path)
    assert "is not a folder" in message and "train.bin and test.bin" in message


def test_a_cifar100_file_given_as_cifar10_is_refused(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "c10")
    # 2 label bytes + 3072 pixels is not a multiple of 3073 for a handful of records
    (folder / "test_batch.bin").write_bytes(cifar_records(3, 2, top=20))
    [(_, message)] = path_problems(spec(name="cifar10", path="c10"), tmp_path)
    assert "test_batch.bin" in message and "not a whole number" in message


# -- .npz ---------------------------------------------------------------------------------


def test_npz_x_y_is_split_and_keeps_any_shape(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((40, 7)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    data = load_dataset(spec(name="npz", path="d.npz", test_fraction=0.25), tmp_path)
    assert data.sample_shape == (7,) and data.classes == 4 and data.task == "classification"
    assert len(data.y_train) == 30 and len(data.y_test) == 10
    assert data.y_train.dtype == np.int64


def test_npz_with_its_own_test_split_and_uint8_scaling(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 256, (8, 2, 4, 4), dtype=np.uint8),
        y_train=np.arange(8) % 2,
        x_test=rng.integers(0, 256, (3, 2, 4, 4), dtype=np.uint8),
        y_test=np.array([0, 1, 1]),
    )
    data = load_dataset(spec(name="npz", path="d.npz"), tmp_path)
    assert data.x_train.shape == (8, 2, 4, 4) and len(data.y_test) == 3
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0


def test_npz_float_targets_are_regression_unless_told(tmp_path: Path) -> None:
    np.savez(tmp_path / "r.npz", x=np.ones((10, 3)), y=np.linspace(0, 1, 10))
    data = load_dataset(spec(name="npz", path="r.npz"), tmp_path)
    assert data.task == "regression" and data.y_train.dtype == np.float32
    np.savez(tmp_path / "w.npz", x=np.ones((10, 3)), y=np.arange(10.0) % 3)
    whole = load_dataset(spec(name="npz", path="w.npz", task="classification"), tmp_path)
    assert whole.task == "classification" and whole.classes == 3
    problems = path_problems(spec(name="npz", path="r.npz", task="classification"), tmp_path)
    assert problems == [
        ("dataset.task", "is classification but y holds fractions; give integer labels")
    ]


def test_npz_object_arrays_are_refused_never_unpickled(tmp_path: Path) -> None:
    x = np.empty(4, dtype=object)
    x[:] = [np.zeros(2)] * 4
    np.savez(tmp_path / "o.npz", x=x, y=np.arange(4))
    [(where, message)] = path_problems(spec(name="npz", path="o.npz"), tmp_path)
    assert where == "dataset.path" and "object arrays" in message and "refused" in message


@pytest.mark.parametrize(
    ("arrays", "text"),
    [
        ({"x": np.ones((4, 2))}, "has arrays x; it needs 'x' and 'y', or 'x_train'"),
        ({"x": np.ones((4, 2)), "y": np.arange(3)}, "'x' has 4 samples but 'y' has 3"),
        ({"x": np.ones(4), "y": np.arange(4)}, "must be (samples, features...)"),
        ({"x": np.array(["a", "b"]), "y": np.arange(2)}, "is <U1; give numbers"),
    ],
)
def test_npz_faults(tmp_path: Path, arrays: dict[str, Any], text: str) -> None:
    np.savez(tmp_path / "f.npz", **arrays)
    [(where, message)] = path_problems(spec(name="npz", path="f.npz"), tmp_path)
    assert where == "dataset.path" and text in message


def test_npz_missing_or_not_a_zip(tmp_path: Path) -> None:
    [(_, message)] = path_problems(spec(name="npz", path="none.npz"), tmp_path)
    assert "is not a file" in message
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    [(_, message)] = path_problems(spec(name="npz", path="bad.npz"), tmp_path)
    assert "cannot be read" in message
    np.save(tmp_path / "one.npy", np.ones(3))
    [(_, message)] = path_problems(spec(name="npz", path="one.npy"), tmp_path)
    assert "is a single .npy array" in message


# -- image folders -----------------------------------------------------------------------


def test_image_folder_is_decoded_resized_rgb_or_gray(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "img", {"cat": 4, "dog": 4})
    rgb = load_dataset(spec(name="images", path="img", image_size=6, test_fraction=0.25), tmp_path)
    assert rgb.sample_shape == (3, 6, 6) and rgb.classes == 2
    assert rgb.class_names == ("cat", "dog") and len(rgb.y_train) + len(rgb.y_test) == 8
    gray = load_dataset(spec(name="images", path="img", channels=1), tmp_path)
    assert gray.sample_shape == (1, 32, 32)


def test_image_folder_with_train_and_test(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "img" / "train", {"a": 3, "b": 2})
    write_png_folder(tmp_path / "img" / "test", {"a": 1, "b": 1})
    data = load_dataset(spec(name="images", path="img", image_size=4), tmp_path)
    assert len(data.y_train) == 5 and list(data.y_test) == [0, 1]


def test_image_folder_faults(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    [(_, message)] = path_problems(spec(name="images", path="flat"), tmp_path)
    assert "holds no sub-folders" in message and "one sub-folder of images per class" in message
    write_png_folder(tmp_path / "img", {"a": 2, "b": 2})
    (tmp_path / "img" / "b" / "broken.png").write_bytes(b"not a png")
    [(where, message)] = path_problems(spec(name="images", path="img"), tmp_path)
    assert where == "dataset.path" and "Pillow cannot decode" in message
    assert "broken.png" in message


# -- synthetic, normalisation, validation --------------------------------------------------


def test_synthetic_three_channels_in_cifar_format() -> None:
    data = load_dataset(spec(name="synthetic", channels=3, image_size=32, samples=40), Path("."))
    assert data.sample_shape == (3, 32, 32) and data.x_train.dtype == np.float32
    assert load_dataset(spec(name="synthetic"), Path(".")).sample_shape == (1, 8, 8)


def test_channel_normalisation_uses_training_statistics_per_channel() -> None:
    data = load_dataset(
        spec(name="synthetic", channels=3, image_size=4, samples=200, normalize="channel"),
        Path("."),
    )
    means = data.x_train.mean(axis=(0, 2, 3))
    stds = data.x_train.std(axis=(0, 2, 3))
    np.testing.assert_allclose(means, 0.0, atol=1e-5)
    np.testing.assert_allclose(stds, 1.0, atol=1e-4)


def test_validation_split_is_carved_from_training_by_seed() -> None:
    base = load_dataset(spec(name="synthetic", samples=100), Path("."))
    split = load_dataset(spec(name="synthetic", samples=100, validation_fraction=0.2), Path("."))
    assert len(split.y_val) == 15 and len(split.y_train) == 60 and len(base.y_val) == 0
    np.testing.assert_array_equal(split.x_test, base.x_test)  # test split untouched
    again = load_dataset(spec(name="synthetic", samples=100, validation_fraction=0.2), Path("."))
    np.testing.assert_array_equal(again.y_val, split.y_val)


def test_set_specific_fields_are_refused_elsewhere() -> None:
    with pytest.raises(ValueError, match="'label' is only read for dataset 'cifar100'"):
        spec(name="cifar10", path="x", label="coarse")
    with pytest.raises(ValueError, match="'task' is only read for dataset 'npz'"):
        spec(name="digits", task="regression")
    with pytest.raises(ValueError, match=r"dataset 'npz' needs 'path': the \.npz file"):
        spec(name="npz")


# -- augmentation --------------------------------------------------------------------------


def test_crop_keeps_the_size_and_shifts_within_the_padding() -> None:
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5) + 1
    out = random_crop(x, 2, batch_generator(0, 1, 0))
    assert out.shape == x.shape
    for image, original in zip(out, x, strict=True):
        nonzero = image[image != 0]
        assert set(nonzero.tolist()) <= set(original.flatten().tolist())


def test_flip_mirrors_some_images_and_is_deterministic() -> None:
    x = torch.arange(64 * 4, dtype=torch.float32).reshape(64, 1, 2, 2)
    one = random_flip(x, batch_generator(3, 1, 2))
    two = random_flip(x, batch_generator(3, 1, 2))
    assert torch.equal(one, two)
    flipped = (one != x).flatten(1).any(dim=1)
    assert 0 < int(flipped.sum()) < 64
    assert torch.equal(one[flipped], x[flipped].flip(-1))


def test_augmentation_off_is_none() -> None:
    assert augmentation(None) is None and augmentation(AugmentSpec()) is None
    assert augmentation(AugmentSpec(crop=4, flip=True)) is not None


# -- through the validator, and a few batches of training ----------------------------------

CNN = {
    "layers": [
        {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        "ReLU",
        {"type": "MaxPool2d", "kernel_size": 4},
        "Flatten",
        {"type": "Linear", "out_features": 10},
    ],
    "convert": "all",
}


def experiment(dataset: dict[str, Any], model: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "data",
        "dataset": dataset,
        "model": model or CNN,
        "rpu": "TorchInferenceRPUConfig",
        "training": {"epochs": 1},
    }


def test_three_channel_cnn_is_accepted_and_trains_with_augmentation() -> None:
    from aif.aims.analog import build
    from aif.aims.analog.training import EpochRunner, evaluate

    data_spec = {
        "name": "synthetic",
        "channels": 3,
        "image_size": 32,
        "samples": 64,
        "augment": {"crop": 4, "flip": True},
        "normalize": "channel",
        "validation_fraction": 0.25,
        "batch_size": 16,
    }
    verdict = review_experiment(experiment(data_spec), Path("."))
    assert verdict.accepted, verdict.problems
    assert verdict.experiment is not None
    exp = verdict.experiment
    data = load_dataset(exp.dataset, Path("."))
    assert data.sample_shape == (3, 32, 32)
    assert exp.rpu is not None
    model = build.build_model(exp.model, build.build_rpu_config(exp.rpu), data.sample_shape)
    conv = next(m for m in model.modules() if "Conv2d" in type(m).__name__)
    assert conv.in_channels == 3
    optimizer = build.build_optimizer(exp.training, model)
    cpu = torch.device("cpu")
    runner = EpochRunner(
        model,
        optimizer,
        build.loss_function(exp.training),
        data.x_train,
        data.y_train,
        16,
        0,
        1,
        cpu,
        augment=augmentation(exp.dataset.augment),
    )
    runner.step(0.0)
    runner.step(0.0)
    assert runner.batches == 2 and np.isfinite(runner.loss)
    assert 0.0 <= evaluate(model, data.x_val, data.y_val, 16, cpu) <= 1.0


def write_npz(folder: Path, **arrays: Any) -> None:
    np.savez(folder / "d.npz", **arrays)


def test_validator_refuses_bad_data_with_the_field_and_fix(tmp_path: Path) -> None:
    write_npz(tmp_path, x=np.ones((20, 5), np.float32), y=np.arange(20) % 10)
    verdict = review_experiment(experiment({"name": "npz", "path": "d.npz"}), tmp_path)
    assert verdict.problems == [
        ("model.layers.0", "Conv2d needs an image but gets 5 features; move Flatten after it")
    ]
    verdict = review_experiment(experiment({"name": "cifar10", "path": "none"}), tmp_path)
    assert [p for p, _ in verdict.problems] == ["dataset.path"]
    assert "is not a folder" in verdict.problems[0][1]


def test_validator_refuses_regression_and_augmenting_flat_samples(tmp_path: Path) -> None:
    write_npz(tmp_path, x=np.ones((20, 5), np.float32), y=np.linspace(0, 1, 20))
    mlp = {"layers": [{"type": "Linear", "out_features": 2}], "convert": "all"}
    verdict = review_experiment(
        experiment({"name": "npz", "path": "d.npz", "augment": {"flip": True}}, mlp), tmp_path
    )
    fields = {p for p, _ in verdict.problems}
    assert {"dataset.task", "dataset.augment"} <= fields
    augment = dict(verdict.problems)["dataset.augment"]
    assert "remove 'augment'" in augment


def test_augmented_epoch_is_the_same_in_one_slice_or_many() -> None:
    from aif.aims.analog.training import EpochRunner

    data = load_dataset(spec(name="synthetic", channels=3, image_size=8, samples=80), Path("."))
    augment = augmentation(AugmentSpec(crop=2, flip=True))
    weights = []
    for budget in (1e9, 0.0):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        runner = EpochRunner(
            model,
            optimizer,
            torch.nn.functional.cross_entropy,
            data.x_train,
            data.y_train,
            16,
            5,
            1,
            torch.device("cpu"),
            augment=augment,
        )
        while not runner.step(budget):
            pass
        weights.append(model[1].weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
