"""aif: an MPAI-AIF runtime for analog AI experiments.

This module is the public API; everything else may change without notice.
"""

from aif.aims.analog.spec import Experiment
from aif.aims.base import AIM, Peer
from aif.communication.ports import EndOfStream, Record, Signal, SignalCode, Stop
from aif.controller.client import Client
from aif.controller.controller import Controller
from aif.controller.run import RunState, WorkflowResult, WorkflowRun
from aif.errors import (
    AIFError,
    AIMError,
    AIMFailed,
    AttestationError,
    ChannelClosed,
    ChannelError,
    ChipConnectionError,
    ChipError,
    CleanupError,
    ConfigError,
    ControllerError,
    DaemonError,
    ExperimentError,
    HardwareError,
    IntegrityError,
    JobNotFound,
    KeyFileError,
    KeyNotFound,
    LifecycleError,
    MalformedMessage,
    MessageTooLarge,
    PackageNotFound,
    PackageSignatureError,
    PortTypeError,
    ProtocolError,
    RegistryError,
    SecurityError,
    StateError,
    StorageError,
    StoreError,
    TypeSyntaxError,
    UnsafeArchive,
    UntrustedKey,
    WireError,
    WorkflowError,
)
from aif.security.keys import KeyRing
from aif.storage.secure import SecureStorage
from aif.store.client import StoreClient

__version__ = "0.1.0"

__all__ = [
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
    "StoreClient",
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
