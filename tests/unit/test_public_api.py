"""The public API is what ``aif/__init__.py`` exports: pinned, so a change is deliberate."""

import aif

EXPECTED = [
    "AIM",
    "AIFError",
    "AIMError",
    "AIMFailed",
    "ChannelClosed",
    "ChannelError",
    "CleanupError",
    "ConfigError",
    "Controller",
    "ControllerError",
    "EndOfStream",
    "KeyNotFound",
    "LifecycleError",
    "MalformedMessage",
    "MessageTooLarge",
    "PortTypeError",
    "Record",
    "RegistryError",
    "RunState",
    "Signal",
    "SignalCode",
    "Stop",
    "StorageError",
    "TypeSyntaxError",
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
