"""The records the analog AIMs exchange, as MPAI-AIF type strings: one place for all.

::

    experiment-source ──EXPERIMENT──► validator ──JOB──► simulator ──METRICS, RESULT──► reporter
                                          │                  └──MODEL──► imc_chip ──RESULT──┘
                                          └──────────────REJECTION──────────────────────┘

Specs travel as JSON text (the validator re-checks them with pydantic on arrival),
numbers as float64 so a NaN (no accuracy yet) survives the wire.
"""

from __future__ import annotations

#: One experiment as the user wrote it; ``error`` says why a file could not be read.
EXPERIMENT_RECORD = "{string name; string source; string spec; string error}"
#: An accepted job (one RPU configuration of an experiment), routed to one simulator.
JOB_RECORD = (
    "{string job; string experiment; string label; string source; string device; string spec}"
)
#: An experiment that cannot run, with every reason as ``path: message``.
REJECTION_RECORD = "{string experiment; string source; string[] problems}"
#: One finished epoch of one job (accuracy: the test metric after it, mse for regression).
METRICS_RECORD = (
    "{string job; int32 epoch; int32 epochs; float64 loss; float64 accuracy; "
    "float64 seconds; float64 lr}"
)
#: The outcome of one job, also for stopped and failed ones. ``metric`` names what
#: ``accuracy`` and the drift means measure (``accuracy``, or ``mse`` for regression);
#: ``stopped_epoch`` is where early stopping ended training (0: it did not);
#: ``layer_*`` give each analog layer's tiles and MACs per sample.
RESULT_RECORD = (
    "{string job; string experiment; string label; string family; string device; "
    "string status; string error; int32 epochs_done; float64 train_seconds; "
    "float64 accuracy; float64[] drift_times; float64[] drift_mean; float64[] drift_std; "
    "float64[] drift_mean_compensated; float64[] drift_std_compensated; string checkpoint; "
    "string simulator; string metric; int32 stopped_epoch; string[] layer_names; "
    "int64[] layer_tiles; int64[] layer_macs}"
)
#: A trained model for deployment: the job's spec (JSON, one configuration) and its
#: weights as a digital model of the same layers would hold them (``names[i]`` is the
#: state-dict key of ``tensors[i]``; analog layers give their effective weights).
MODEL_RECORD = (
    "{string job; string experiment; string label; string source; string spec; "
    "string[] names; (tensor<float32>)[] tensors}"
)


def deployed_job(job: str, target: str) -> str:
    """The job name of ``job``'s model measured on ``target``: ``hwa-cnn@chip``."""
    return f"{job}@{target}"


def trained_job(job: str) -> str:
    """The job a (possibly deployed) job name comes from: ``hwa-cnn@chip`` → ``hwa-cnn``."""
    return job.split("@", 1)[0]
