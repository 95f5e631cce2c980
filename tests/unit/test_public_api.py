"""The public API is what ``aif/__init__.py`` exports, with the sub-APIs ``aif.store``,
``aif.security``, ``aif.storage`` and ``aif.aims.analog.imc_chip``: pinned both ways, so a
name can neither slip in nor out unnoticed (httpx's ``test_exported_members``)."""

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

import aif

PUBLIC_MODULES = ["aif", "aif.store", "aif.security", "aif.storage", "aif.aims.analog.imc_chip"]

EXPECTED = [
    "AIM",
    "AIFError",
    "AIMError",
    "AIMFailed",
    "AIMListing",
    "AIMStateChanged",
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
    "DaemonInfo",
    "EndOfStream",
    "Event",
    "EventRow",
    "Experiment",
    "ExperimentError",
    "HardwareError",
    "InstanceRecord",
    "IntegrityError",
    "JobAIM",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "JobStateChanged",
    "JobStatus",
    "KeyFileError",
    "KeyNotFound",
    "KeyRing",
    "LifecycleError",
    "LogLine",
    "MalformedMessage",
    "MessageTooLarge",
    "PackageNotFound",
    "PackageSignatureError",
    "Peer",
    "PeerHostedAIM",
    "PortTypeError",
    "ProgressUpdate",
    "ProtocolError",
    "Record",
    "RegistryError",
    "ResolvedWorkflow",
    "ResultReport",
    "RunState",
    "RunStateChanged",
    "RunningAIM",
    "SecureStorage",
    "SecurityError",
    "Signal",
    "SignalCode",
    "StateError",
    "Stop",
    "StorageError",
    "StoreError",
    "TypeSyntaxError",
    "Unrecognized",
    "UnsafeArchive",
    "UntrustedKey",
    "WireError",
    "Workflow",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowRun",
    "__version__",
    "export_metadata",
    "load_workflow",
    "load_workflow_text",
    "resolve",
]


def test_all_is_pinned() -> None:
    # Order: ruff's RUF022 keeps __all__ sorted (isort style: all-caps names first).
    assert aif.__all__ == EXPECTED


def test_every_public_name_exists() -> None:
    for name in aif.__all__:
        assert hasattr(aif, name), name


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_are_exactly_all(module_name: str) -> None:
    """Everything public-looking in the module is in ``__all__``, and ``__all__`` resolves."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        getattr(module, name)  # a lazy name imports here
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(module.__all__), f"public by accident: {public - set(module.__all__)}"
    assert set(dir(module)) >= set(module.__all__)


@pytest.mark.parametrize("module_name", [*PUBLIC_MODULES, "aif.workflow"])
def test_no_submodule_hides_a_public_name(module_name: str) -> None:
    """Importing ``pkg.name`` binds the submodule as ``pkg.name``: a public name that is
    also a submodule's name would turn into the module once anything imports it."""
    module = importlib.import_module(module_name)
    for info in pkgutil.walk_packages(module.__path__, f"{module_name}."):
        if not info.name.endswith("__main__"):  # that one runs a command
            importlib.import_module(info.name)
    for name in module.__all__:
        assert not isinstance(getattr(module, name), types.ModuleType), f"{module_name}.{name}"


def test_import_aif_loads_nothing_of_the_controller_side() -> None:
    """``import aif`` (every AIM process and CLI call pays it) loads the SDK, not the house."""
    code = "import sys, aif; print(' '.join(sorted(m for m in sys.modules if m.startswith('aif'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.split()
    heavy = ("aif.controller", "aif.daemon", "aif.workflow", "aif.cli", "aif.store", "torch")
    assert not [m for m in loaded if m.startswith(heavy)], loaded


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
        spec.ModelSpec,
        spec.Linear,
        spec.Conv2d,
        spec.MaxPool2d,
        spec.Dropout,
        spec.BatchNorm2d,
        spec.Conv1d,
        spec.AdaptiveAvgPool2d,
        spec.Embedding,
        spec.LeakyReLU,
        spec.ELU,
        spec.LSTM,
        spec.Residual,
        spec.Sequential,
    ]
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name in model.model_fields
        if name != "type" and f"`{name}`" not in doc
    ]
    assert not missing, f"docs/experiments.md does not describe: {missing}"
    assert all(f"`{layer}`" in doc for layer in spec.LAYER_TYPES)
