"""The data part of an experiment: which set, where its files are, how it is split,
normalised and augmented.

Split from :mod:`aif.aims.analog.spec` (which re-exports everything here) as the model
part is (``model_spec``): the sets are their own small vocabulary, with rules about
which field belongs to which set. The readers are :mod:`aif.aims.analog.datasets` and
:mod:`aif.aims.analog.data_files`; nothing here reads a file.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import Field

from aif.aims.analog.model_spec import TORCH_PATH
from aif.aims.analog.spec_values import MAX_DATASET_BYTES, Int
from aif.inputs.files import size_text

_FORBID = pydantic.ConfigDict(extra="forbid")


class AugmentSpec(pydantic.BaseModel):
    """Random changes to each training batch (never to validation or test samples)."""

    model_config = _FORBID
    crop: Int = Field(
        default=0,
        ge=0,
        le=64,
        description="pad each side by this many pixels (zeros), then crop back to the "
        "original size at a random offset; 0: off",
    )
    flip: bool = Field(default=False, description="mirror half the images left to right")


#: Sets read from ``path`` (a folder, an ``.npz`` file or a text file).
FILE_SETS = ("idx", "cifar10", "cifar100", "npz", "images", "text")

#: Which fields each set reads besides the common ones, for the "only read for" faults.
_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "classes": ("synthetic",),
    "samples": ("synthetic",),
    "image_size": ("synthetic", "images"),
    "channels": ("synthetic", "images"),
    "label": ("cifar100",),
    "task": ("npz", "torch"),
    "sequence_length": ("text",),
    "vocabulary": ("text",),
    "factory": ("torch",),
    "args": ("torch",),
}


class DatasetSpec(pydantic.BaseModel):
    """Where the samples come from; nothing is ever downloaded.

    Image sets yield ``(N, channels, height, width)`` float32 samples and integer class
    labels, so an MLP starts with a ``Flatten`` layer; ``npz`` and ``torch`` keep the
    shape they hold; ``text`` yields one-hot ``(N, sequence_length, vocabulary)`` samples
    and the index of each one's next character.
    """

    model_config = _FORBID
    name: Literal[
        "digits", "idx", "synthetic", "cifar10", "cifar100", "npz", "images", "text", "torch"
    ] = Field(
        default="digits",
        description="digits: scikit-learn's bundled 8x8 set; idx: MNIST-format files; "
        "synthetic: separable random classes; cifar10, cifar100: the CIFAR binary files; "
        "npz: arrays in a NumPy .npz file; images: a folder with one sub-folder per class; "
        "text: a UTF-8 text file as one-hot character sequences; torch: arrays from "
        "the user's 'factory'",
    )
    path: str | None = Field(
        default=None,
        description="idx, cifar10, cifar100, images: the folder; npz: the .npz file; "
        "text: the UTF-8 text file; "
        "relative to the experiment file (inline experiments: to the workflow's folder)",
    )
    test_fraction: float = Field(
        default=0.25,
        gt=0,
        lt=1,
        description="digits, synthetic, and npz and images without their own test split: "
        "share held out for testing",
    )
    validation_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="share of the training split held out (seeded) to report validation "
        "accuracy per epoch; 0: none",
    )
    max_train: Int | None = Field(default=None, ge=1, description="use at most this many")
    max_test: Int | None = Field(default=None, ge=1, description="test on at most this many")
    normalize: Literal["none", "unit", "standard", "channel"] = Field(
        default="unit",
        description="unit: scale pixels to [0, 1]; standard: zero mean, unit variance; "
        "channel: the same per channel (statistics of the training split)",
    )
    augment: AugmentSpec | None = Field(
        default=None, description="random crop and flip of training batches: {crop: 4, flip: true}"
    )
    batch_size: Int = Field(default=32, ge=1, le=65_536)
    # synthetic only
    classes: Int = Field(default=10, ge=2, le=1000, description="synthetic: number of classes")
    samples: Int = Field(default=2000, ge=10, description="synthetic: number of samples")
    image_size: Int | None = Field(
        default=None,
        ge=2,
        le=256,
        description="synthetic: side of the image (8); images: side every image is resized to (32)",
    )
    channels: Literal[1, 3] | None = Field(
        default=None, description="synthetic (1) and images (3): 1 grayscale, 3 RGB"
    )
    label: Literal["fine", "coarse"] = Field(
        default="fine", description="cifar100: the 100 fine classes or the 20 coarse ones"
    )
    task: Literal["classification", "regression"] | None = Field(
        default=None,
        description="npz, torch: what y holds; left out: classification for integer y, "
        "regression for float y",
    )
    sequence_length: Int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="text: characters per sample; the target is the character after them",
    )
    vocabulary: str | None = Field(
        default=None,
        min_length=2,
        description="text: the characters, in one-hot order (each once); left out: the "
        "file's own, sorted",
    )
    factory: str | None = Field(
        default=None,
        pattern=TORCH_PATH,
        description="torch: package.module:function returning x_train, y_train, x_test, "
        "y_test (or x, y) as numeric arrays or tensors",
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="torch: the factory's keyword arguments"
    )
    seed: Int = Field(default=0, description="order of the splits and of synthetic samples")

    @property
    def side(self) -> int:
        """The image side ``synthetic`` draws and ``images`` resizes to."""
        if self.image_size is not None:
            return self.image_size
        return 32 if self.name == "images" else 8

    @property
    def depth(self) -> int:
        """The channels ``synthetic`` draws and ``images`` decodes to."""
        if self.channels is not None:
            return self.channels
        return 3 if self.name == "images" else 1

    @pydantic.model_validator(mode="after")
    def _fields_of_the_set(self) -> DatasetSpec:
        faults = []
        if self.name in FILE_SETS and not self.path:
            what = {"npz": "the .npz file", "text": "the UTF-8 text file"}.get(
                self.name, "the folder holding its files"
            )
            faults.append(f"dataset {self.name!r} needs 'path': {what}")
        if self.name == "torch" and not self.factory:
            faults.append(
                "dataset 'torch' needs 'factory': package.module:function returning "
                "x_train, y_train, x_test, y_test"
            )
        if self.name == "synthetic":
            size = self.samples * self.depth * self.side * self.side * 4
            if size > MAX_DATASET_BYTES:
                faults.append(
                    f"'samples': {self.samples} samples of {self.depth}x{self.side}x{self.side} "
                    f"are {size_text(size)} of float32, over the limit of "
                    f"{size_text(MAX_DATASET_BYTES)}; lower 'samples' or 'image_size'"
                )
        if self.name not in FILE_SETS and self.path is not None:
            listed = ", ".join(FILE_SETS)
            faults.append(
                f"'path' is only read for datasets {listed}, not {self.name!r}; remove it"
            )
        # Only values the user wrote: a job's spec is this model dumped and parsed again,
        # with every default written out, so a default value is never a fault.
        for sets in dict.fromkeys(_ONLY_FOR.values()):
            if self.name in sets:
                continue
            written = [
                f
                for f, owners in _ONLY_FOR.items()
                if owners == sets
                and f in self.model_fields_set
                and getattr(self, f)
                != DatasetSpec.model_fields[f].get_default(call_default_factory=True)
            ]
            if written:
                one = len(written) == 1
                names = ", ".join(repr(f) for f in written)
                owners = " and ".join(repr(o) for o in sets)
                faults.append(
                    f"{names} {'is' if one else 'are'} only read for dataset {owners}, "
                    f"not {self.name!r}; remove {'it' if one else 'them'}"
                )
        if faults:
            raise ValueError("; ".join(faults))
        return self
