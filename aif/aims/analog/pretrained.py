"""Pre-trained digital weights for a zoo or torch model: ``model: {weights: FILE}``.

Researchers convert networks trained elsewhere (aihwkit's example 30 loads weights
trained hardware-aware by another library). The file holds the digital model's state
dict and is loaded before ``convert_to_analog``, so the analog tiles start from it. Two
formats, neither of which can run code when read: ``.safetensors`` (the format
Hugging Face and most hubs publish) and ``.npz`` (NumPy, read with
``allow_pickle=False``). A torch ``.pt``/``.th`` file is a pickle and is refused; the
error says how to convert it once, on the user's own trusted copy.

Keys and shapes must match the model's state dict exactly (BatchNorm's
``num_batches_tracked`` counters may be left out); every mismatch is a problem naming
the key, so a wrong architecture argument is found before any training.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from aif.aims.analog.aihwkit_names import describe

Problem = tuple[str, str]

#: How many keys of each kind of mismatch a problem lists.
_SHOWN = 5

_CONVERT = (
    'convert it once with: python -c "import torch, safetensors.torch as s; '
    "sd = torch.load('IN.pt', map_location='cpu', weights_only=True); "
    "s.save_file({k: v.clone() for k, v in sd.items()}, 'OUT.safetensors')\" "
    "(take the state dict out of a wrapper dict first, e.g. sd['model_state_dict'])"
)


def read_weights(path: Path, where: str) -> tuple[dict[str, torch.Tensor], list[Problem]]:
    """The tensors of ``path`` by name, or the problems that stop them being read."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".th", ".pkl", ".ckpt"):
        return {}, [(where, f"{path.name} is a pickle file, which aif never loads; {_CONVERT}")]
    if suffix not in (".npz", ".safetensors"):
        return {}, [(where, f"{path.name}: give a .safetensors or .npz file of the state dict")]
    if not path.is_file():
        return {}, [(where, f"no file {path}; give the path of the weights file")]
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path))), []
        tensors: dict[str, torch.Tensor] = {}
        # our own handle: np.load leaks the one it opens when the archive is corrupt
        with path.open("rb") as file, np.load(file, allow_pickle=False) as archive:
            for name in archive.files:
                array = archive[name]
                if array.dtype.kind not in "biuf":
                    return {}, [(where, f"{name!r} holds {array.dtype} values, not numbers")]
                tensors[name] = torch.from_numpy(np.ascontiguousarray(array))
        return tensors, []
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        return {}, [(where, f"{path.name} cannot be read: {describe(exc)}")]
    except Exception as exc:  # safetensors raises its own SafetensorError
        return {}, [(where, f"{path.name} is not a valid {suffix} file: {describe(exc)}")]


def load_weights_into(model: torch.nn.Module, path: Path, where: str) -> list[Problem]:
    """Load ``path`` into ``model`` (digital, before conversion); problems instead of raising."""
    tensors, problems = read_weights(path, where)
    if problems:
        return problems
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [
        f"{k} {tuple(tensors[k].shape)} (the model's: {tuple(expected[k].shape)})"
        for k in expected
        if k in tensors and tensors[k].shape != expected[k].shape
    ]
    if missing:
        problems.append((where, f"{path.name} lacks {_listed(missing)} of the model"))
    if unexpected:
        problems.append((where, f"{path.name} has {_listed(unexpected)} the model lacks"))
    if wrong:
        shown = "; ".join(wrong[:_SHOWN])
        problems.append((where, f"{path.name} has tensors of the wrong shape: {shown}"))
    if problems:
        last = problems[-1]
        problems[-1] = (last[0], f"{last[1]}; check model.args against the file")
        return problems
    state = {
        k: tensors[k].to(expected[k].dtype) if k in tensors else v for k, v in expected.items()
    }
    model.load_state_dict(state, strict=True)
    return []


def _listed(keys: list[str]) -> str:
    """``3 key(s): a, b, c`` (the first few, and how many more)."""
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return f"{len(keys)} key(s): {', '.join(keys[:_SHOWN])}{more}"
