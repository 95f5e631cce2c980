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
    JobNotFound,
    KeyNotFound,
    LifecycleError,
    MalformedMessage,
    MessageTooLarge,
    PortTypeError,
    ProtocolError,
    RegistryError,
    StateError,
    StorageError,
    TypeSyntaxError,
    WireError,
    WorkflowError,
)

__version__ = "0.1.0"

__all__ = [
    "AIM",
    "AIFError",
    "AIMError",
    "AIMFailed",
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
    "JobNotFound",
    "KeyNotFound",
    "LifecycleError",
    "MalformedMessage",
    "MessageTooLarge",
    "Peer",
    "PortTypeError",
    "ProtocolError",
    "Record",
    "RegistryError",
    "RunState",
    "Signal",
    "SignalCode",
    "StateError",
    "Stop",
    "StorageError",
    "TypeSyntaxError",
    "WireError",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowRun",
    "__version__",
]
