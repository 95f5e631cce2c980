"""Random crop and horizontal flip of training batches, in plain torch.

``dataset.augment`` (:class:`~aif.aims.analog.spec.AugmentSpec`) changes each training
batch as it is drawn, never the validation or test samples. The randomness comes from a
generator seeded by ``(seed, epoch, batch)`` (:func:`batch_generator`), so an epoch run in
one slice or in many sees the same augmented batches, as :mod:`training` promises.
torch is imported here at the top: only the training side imports this module.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from aif.aims.analog.spec import AugmentSpec

#: ``(batch, generator) -> batch``: what :class:`~aif.aims.analog.training.EpochRunner` calls.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, epoch, batch)``."""
    entropy = np.random.SeedSequence([seed % 2**63, epoch % 2**63, batch % 2**63])
    return torch.Generator().manual_seed(int(entropy.generate_state(1, np.uint64)[0] >> 1))


def augmentation(spec: AugmentSpec | None) -> Augment | None:
    """What ``spec`` asks for as one function; ``None`` when it changes nothing."""
    if spec is None or (spec.crop == 0 and not spec.flip):
        return None

    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if spec.crop:
            x = random_crop(x, spec.crop, generator)
        if spec.flip:
            x = random_flip(x, generator)
        return x

    return apply


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` ``(N, C, H, W)`` zero-padded by ``padding`` on every side, then
    cropped back to ``H`` x ``W`` at an offset drawn per image."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    samples = torch.arange(n)[:, None, None, None]
    channels = torch.arange(x.shape[1])[None, :, None, None]
    return padded[samples, channels, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` ``(N, C, H, W)`` mirrored left to right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
