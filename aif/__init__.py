"""aif: an MPAI-AIF runtime for analog AI experiments.

This module is the public API, with the Store's (``aif.store``) and the secure
profile's building blocks (``aif.security``, ``aif.storage``) beside it; everything
else may change without notice.

Load, check and run a workflow from Python::

    import asyncio, aif

    async def main() -> aif.WorkflowResult:
        resolved = aif.resolve(aif.load_workflow("workflows/hwa-training.yaml"))
        async with aif.Controller() as controller:
            run = await controller.launch(resolved)
            return await run.wait()

    print(asyncio.run(main()).state)

Only the errors are imported at once; every other name on first use, so that an AIM's
host process loads nothing of the controller, the daemon or the workflow loader, and
``aif --version`` loads nothing at all.
"""

import typing

from aif import lazy_exports as _lazy
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
from aif.version import __version__

if typing.TYPE_CHECKING:
    from aif.aims.analog.spec import Experiment
    from aif.aims.base import AIM, Peer
    from aif.communication.event_payloads import (
        AIMStateChanged,
        JobStateChanged,
        LogLine,
        ProgressUpdate,
        ResultReport,
        RunStateChanged,
        Unrecognized,
    )
    from aif.communication.events import Event
    from aif.communication.ports import EndOfStream, Record, Signal, SignalCode, Stop
    from aif.controller.controller import Controller
    from aif.controller.run import RunState, WorkflowResult, WorkflowRun
    from aif.daemon.client import Client
    from aif.daemon.records import (
        AIMListing,
        DaemonInfo,
        EventRow,
        InstanceRecord,
        JobAIM,
        JobRecord,
        JobState,
        JobStatus,
        PeerHostedAIM,
        RunningAIM,
    )
    from aif.security.keys import KeyRing
    from aif.storage.secure import SecureStorage
    from aif.workflow.export import export_metadata
    from aif.workflow.loader import load_workflow, load_workflow_text
    from aif.workflow.model import Workflow
    from aif.workflow.resolver import ResolvedWorkflow, resolve

__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "AIM": "aif.aims.base",
        "AIMListing": "aif.daemon.records",
        "AIMStateChanged": "aif.communication.event_payloads",
        "Client": "aif.daemon.client",
        "Controller": "aif.controller.controller",
        "DaemonInfo": "aif.daemon.records",
        "EndOfStream": "aif.communication.ports",
        "Event": "aif.communication.events",
        "EventRow": "aif.daemon.records",
        "Experiment": "aif.aims.analog.spec",
        "InstanceRecord": "aif.daemon.records",
        "JobAIM": "aif.daemon.records",
        "JobRecord": "aif.daemon.records",
        "JobState": "aif.daemon.records",
        "JobStateChanged": "aif.communication.event_payloads",
        "JobStatus": "aif.daemon.records",
        "KeyRing": "aif.security.keys",
        "LogLine": "aif.communication.event_payloads",
        "Peer": "aif.aims.base",
        "PeerHostedAIM": "aif.daemon.records",
        "ProgressUpdate": "aif.communication.event_payloads",
        "Record": "aif.communication.ports",
        "ResolvedWorkflow": "aif.workflow.resolver",
        "ResultReport": "aif.communication.event_payloads",
        "RunState": "aif.controller.run",
        "RunStateChanged": "aif.communication.event_payloads",
        "RunningAIM": "aif.daemon.records",
        "SecureStorage": "aif.storage.secure",
        "Signal": "aif.communication.ports",
        "SignalCode": "aif.communication.ports",
        "Stop": "aif.communication.ports",
        "Unrecognized": "aif.communication.event_payloads",
        "Workflow": "aif.workflow.model",
        "WorkflowResult": "aif.controller.run",
        "WorkflowRun": "aif.controller.run",
        "export_metadata": "aif.workflow.export",
        "load_workflow": "aif.workflow.loader",
        "load_workflow_text": "aif.workflow.loader",
        "resolve": "aif.workflow.resolver",
    },
)

__all__ = [
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
