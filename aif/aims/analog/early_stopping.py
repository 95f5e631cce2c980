"""Early stopping on a validation metric: ``training: {early_stopping: {patience: 3}}``.

After each epoch the simulator gives :meth:`EarlyStopper.update` the epoch's
validation value; once ``patience`` epochs in a row have not improved on the best by
more than ``min_delta``, it says stop, and the job reports the epoch it stopped at
(``stopped_epoch``). The weights are those of the last epoch run. The decision depends
on the values alone, never on time, so a run stops at the same epoch every time.
"""

from __future__ import annotations

import math

from aif.aims.analog.run_spec import EarlyStoppingSpec


class EarlyStopper:
    """Counts epochs without improvement; ``higher_is_better`` for accuracy, not for losses."""

    def __init__(self, spec: EarlyStoppingSpec, higher_is_better: bool) -> None:
        self.spec = spec
        self.higher_is_better = higher_is_better
        self.best = math.nan
        self.best_epoch = 0
        self.waited = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record epoch ``epoch``'s validation ``value``; True when training should stop.

        A NaN value never counts as an improvement.
        """
        sign = 1.0 if self.higher_is_better else -1.0
        improved = math.isfinite(value) and (
            not math.isfinite(self.best) or sign * (value - self.best) > self.spec.min_delta
        )
        if improved:
            self.best, self.best_epoch, self.waited = value, epoch, 0
            return False
        self.waited += 1
        return self.waited >= self.spec.patience


def early_stopper(spec: EarlyStoppingSpec | None, metric: str) -> EarlyStopper | None:
    """The stopper for ``spec`` (``None``: no early stopping); ``metric`` is the job's
    test metric (``accuracy`` or ``mse``), which ``val_accuracy`` follows."""
    if spec is None:
        return None
    higher = spec.metric == "val_accuracy" and metric == "accuracy"
    return EarlyStopper(spec, higher_is_better=higher)
