"""The one error hierarchy of aif.

Every error says what was wrong, where, and what to do about it. Lower-layer
exceptions (pyzmq, msgpack, pydantic, yaml, OS) are translated into these at the
boundary with ``raise ... from exc`` so callers catch one family::

    AIFError
    ├── ConfigError                 bad settings, missing environment (doctor finds these)
    ├── PortTypeError               a value or port that does not fit its MPAI-AIF type
    │   └── TypeSyntaxError         a type string that does not parse (points at the column)
    ├── WireError                   a message that cannot cross a channel
    │   ├── MalformedMessage        frames that do not decode
    │   ├── MessageTooLarge         a message over the channel's size limit
    │   └── ProtocolError           bytes that break the IMC chip wire protocol
    ├── ChannelError                a channel used wrongly or closed
    │   └── ChannelClosed           the channel was closed while waiting on it
    ├── InputError                  a file or YAML text that cannot be read safely
    ├── WorkflowError               an AIW file that does not load or validate
    ├── ExperimentError             an analog experiment that aihwkit cannot run as written
    ├── RegistryError               an AIM type that cannot be resolved
    ├── LifecycleError              a call made in the wrong lifecycle state
    ├── AIMError                    an AIM misbehaved
    │   ├── AIMFailed               an AIM crashed, exited or stopped heart-beating
    │   └── RankFailed              a rank of a data-parallel job died, failed or never came
    ├── HardwareError               a hardware device behind a hardware AIM failed
    │   ├── ChipError               the chip answered with an error reply (``status``)
    │   └── ChipConnectionError     the chip cannot be reached, went away or stopped answering
    ├── ControllerError             the controller could not do what was asked
    │   ├── CleanupError            several resources failed to tear down
    │   ├── StateError              the controller's state database cannot be used
    │   ├── JobNotFound             no submitted job has that id
    │   └── DaemonError             the controller daemon is not there, or already is
    │       └── DaemonNotRunning    no daemon runs on that state directory
    ├── StorageError                a storage key or object problem
    │   └── KeyNotFound             no object under that key
    ├── SecurityError               keys, signatures, encryption, authentication
    │   ├── KeyFileError            a key file that is missing, unreadable or too open
    │   ├── IntegrityError          ciphertext that fails authentication (tampered, wrong key)
    │   ├── UntrustedKey            a signature or client key that nobody trusted
    │   └── AttestationError        an attestation report that does not verify
    └── StoreError                  a Store, package or index problem
        ├── PackageNotFound         no package of that name (and version) in the Store
        ├── PackageSignatureError   a package or index whose signature is missing or wrong
        └── UnsafeArchive           an archive that would write outside its place or is too big
"""

from __future__ import annotations

from collections.abc import Sequence


class AIFError(Exception):
    """Root of every error aif raises on purpose."""


class ConfigError(AIFError):
    """Settings or the environment are not usable; the message names the fix."""


class PortTypeError(AIFError):
    """A value or a port does not fit its MPAI-AIF record type."""


class TypeSyntaxError(PortTypeError):
    """A type string does not parse; ``position`` is the 0-based column of the fault."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.text = text
        self.position = position
        caret = " " * position + "^"
        super().__init__(f"{message} at column {position + 1}\n  {text}\n  {caret}")


class WireError(AIFError):
    """A message cannot be encoded, decoded or sent."""


class MalformedMessage(WireError):
    """Frames that do not decode as an aif message."""


class MessageTooLarge(WireError):
    """A message is larger than the channel's maximum message size."""


class ProtocolError(WireError):
    """Bytes that do not follow the IMC chip wire protocol (``docs/imc-protocol.md``)."""


class ChannelError(AIFError):
    """A channel was used wrongly."""


class ChannelClosed(ChannelError):
    """The channel was closed while a call waited on it."""


class _ProblemLines(AIFError):
    """An error with one line per fault, listed under its message."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        text = message
        if self.problems:
            text += "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class InputError(_ProblemLines, ValueError):
    """A user's file or YAML text cannot be read safely: not a regular file, too big,
    binary, nested too deeply, too many nodes, keys that are not text, duplicate keys.

    ``problems`` holds one line per fault, each naming the file and, where it applies,
    the line. A ``ValueError`` too, for callers that catch the readers' ``ValueError``.
    """


class WorkflowError(_ProblemLines):
    """An AIW file does not load or does not validate.

    ``problems`` holds one line per fault, each naming file, line and field.
    """


class ExperimentError(AIFError):
    """An analog experiment cannot be built or run as written.

    ``problems`` holds ``(path, message)`` pairs, ``path`` a dotted field path such as
    ``rpu.forward.out_nois`` or ``model.layers.3``, so every fault is reported at once.
    """

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        self.problems = list(problems)
        text = message
        if self.problems:
            text += "\n" + "\n".join(f"  - {path}: {msg}" for path, msg in self.problems)
        super().__init__(text)


class RegistryError(AIFError):
    """An AIM type cannot be resolved to a class."""


class LifecycleError(AIFError):
    """A call was made in a lifecycle state that does not allow it."""


class AIMError(AIFError):
    """An AIM misbehaved."""


class AIMFailed(AIMError):
    """An AIM crashed, exited, or stopped heart-beating."""

    def __init__(self, aim: str, cause: str) -> None:
        self.aim = aim
        self.cause = cause
        super().__init__(f"AIM {aim!r} failed: {cause}")


class RankFailed(AIMError):
    """A rank of a data-parallel job died, failed or never came; the job's other ranks
    were stopped. The message names the rank, its process and how it ended."""


class HardwareError(AIFError):
    """A device behind a hardware AIM failed; the message names the device and its address."""


class ChipError(HardwareError):
    """The chip replied with an error; ``status`` is the protocol's status code."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


class ChipConnectionError(HardwareError):
    """The chip cannot be reached, closed the connection, or did not answer in time."""


class ControllerError(AIFError):
    """The controller could not do what was asked."""


class CleanupError(ControllerError):
    """One or more resources failed while being torn down; ``errors`` holds them all."""

    def __init__(self, errors: Sequence[BaseException]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {type(e).__name__}: {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} error(s) during cleanup:\n{lines}")


class StateError(ControllerError):
    """The controller's state database cannot be opened, read or written."""


class JobNotFound(ControllerError):
    """No job has that id (or an id prefix matches several); the message says which exist."""


class DaemonError(ControllerError):
    """The controller daemon cannot be reached, is not running, or already runs there."""


class DaemonNotRunning(DaemonError):
    """No daemon runs on the state directory asked about (its jobs are still readable)."""


class StorageError(AIFError):
    """A storage key is invalid or an object cannot be read or written."""


class KeyNotFound(StorageError, KeyError):
    """No object is stored under that key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "key not found"


class SecurityError(AIFError):
    """Keys, signatures, encryption or authentication failed; the message names the fix."""


class KeyFileError(SecurityError):
    """A key file is missing, unreadable, malformed, too open, or its passphrase is wrong."""


class IntegrityError(SecurityError):
    """Encrypted data failed authentication: tampered, truncated, swapped or a wrong key."""


class UntrustedKey(SecurityError):
    """A signature or client key that is not among the trusted keys."""


class AttestationError(SecurityError):
    """An attestation report is malformed, wrongly signed, stale or lists unexpected digests."""


class StoreError(AIFError):
    """A Store, a package or an index cannot be used as asked."""


class PackageNotFound(StoreError):
    """The Store has no package of that name or version; the message lists what it has."""


class PackageSignatureError(StoreError):
    """A package or an index has no signature, or one that does not verify."""


class UnsafeArchive(StoreError):
    """An archive has absolute paths, ``..``, links, special files, or is over the size limits."""


def describe_exit(status: int) -> str:
    """``exit status 3`` or ``killed by SIGKILL``: how a process ended, in words."""
    import signal

    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"
