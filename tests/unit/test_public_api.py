"""The public API is what ``aif/__init__.py`` exports: pinned, so a change is deliberate."""

import aif

EXPECTED = [
    "AIM",
    "AIFError",
    "AIMError",
    "AIMFailed",
    "AttestationError",
    "ChannelClosed",
    "ChannelError",
    "ChipConnectionError",
    "ChipError",
    "CleanupError",
    "Client",
    "ConfigError",
    "Controller",
    "ControllerError",
    "DaemonError",
    "EndOfStream",
    "Experiment",
    "ExperimentError",
    "HardwareError",
    "IntegrityError",
    "JobNotFound",
    "KeyFileError",
    "KeyNotFound",
    "KeyRing",
    "LifecycleError",
    "MalformedMessage",
    "MessageTooLarge",
    "PackageNotFound",
    "PackageSignatureError",
    "Peer",
    "PortTypeError",
    "ProtocolError",
    "Record",
    "RegistryError",
    "RunState",
    "SecureStorage",
    "SecurityError",
    "Signal",
    "SignalCode",
    "StateError",
    "Stop",
    "StorageError",
    "StoreError",
    "TypeSyntaxError",
    "UnsafeArchive",
    "UntrustedKey",
    "WireError",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowRun",
    "__version__",
]


def test_all_is_pinned() -> None:
    # Order: ruff's RUF022 keeps __all__ sorted (isort style: all-caps names first).
    assert aif.__all__ == EXPECTED


def test_every_public_name_exists() -> None:
    for name in aif.__all__:
        assert hasattr(aif, name), name


def test_every_error_derives_from_aiferror() -> None:
    for name in aif.__all__:
        obj = getattr(aif, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, aif.AIFError), name


def test_the_experiment_reference_names_every_field() -> None:
    """docs/experiments.md must not fall behind the experiment model."""
    from pathlib import Path

    from aif.aims.analog import spec

    doc = (Path(__file__).resolve().parents[2] / "docs" / "experiments.md").read_text()
    models = [
        spec.Experiment,
        spec.DatasetSpec,
        spec.RPUSpec,
        spec.TrainingSpec,
        spec.OptimizerSpec,
        spec.ScheduleSpec,
        spec.InferenceSpec,
        spec.Linear,
        spec.Conv2d,
        spec.MaxPool2d,
        spec.Dropout,
        spec.BatchNorm2d,
    ]
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if name != "type" and f"`{name}`" not in doc
    ]
    assert not missing, f"docs/experiments.md does not describe: {missing}"
    assert all(f"`{layer}`" in doc for layer in spec.LAYER_TYPES)
