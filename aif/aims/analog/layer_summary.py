"""Tiles and MACs per analog layer, as aihwkit's ``analog_summary`` counts them.

``analog_summary`` runs one forward pass of a zero batch through the model, hooking
every leaf layer; its hooks are never removed, so it runs here on a deep copy and the
trained model stays untouched. For each analog layer it gives the tiles used and the
reuse factor (how many vector-matrix products one sample needs: 1 for a Linear, the
output positions for a convolution); MACs per sample are the reuse factor times the
weights of its tiles. A model aihwkit cannot summarise (a recurrent zoo model, say)
gives an empty list rather than failing the job.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

log = logging.getLogger(__name__)


def layer_summary(model: Any, sample_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """``[{name, type, tiles, macs}, ...]`` for each analog layer, first layer first."""
    import torch
    from aihwkit.utils.analog_info import analog_summary

    try:
        clone = copy.deepcopy(model).cpu()
        names = {id(module): name for name, module in clone.named_modules()}
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            info = analog_summary(clone.eval(), (1, *sample_shape))
        layers = []
        for layer in info.layer_summary:
            if not layer.isanalog:
                continue
            weights = sum(int(t.log_in_size) * int(t.log_out_size) for t in layer.tiles_info)
            layers.append(
                {
                    "name": names.get(id(layer.module), layer.name),
                    "type": layer.name,
                    "tiles": int(layer.num_tiles),
                    "macs": int(layer.reuse_factor) * weights,
                }
            )
        return layers
    except Exception as exc:  # a summary must never cost the job
        log.info("analog_summary cannot summarise this model: %s", exc)
        return []
