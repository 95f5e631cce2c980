"""Where an AIM host is in its life: one state, the moves it may make, how it ended.

An ``AIMHost`` walks the AIM API (``aif.api.aim``) in order: it connects and says
``hello``, is registered by ``setup``, sets its AIM up and says ``ready``, is wired,
is started, ends ``done`` or ``failed``, and says ``bye``. ``HostLifecycle`` holds
that as one ``HostState`` and refuses a move the table ``TRANSITIONS`` does not
allow, with a ``LifecycleError`` that names the state, the wanted one, and what must
happen first. It also keeps the one thing that can arrive in any state, a request to
leave (a signal, a lost controller: ``Leaving``), and derives from both, when the
host ends, what its ``bye`` says and its exit status (``Ending``).

Kept apart from the host so that the order of a host's life can be read, and
tested, in one table, without sockets.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from aif.errors import LifecycleError


class HostState(enum.Enum):
    """Lifecycle of one AIM host, in the order of the AIM API.

    Suspension is not a host state: the controller may suspend and resume an AIM any
    time after wiring (even before ``start`` or after the run ended), and its gate is
    the event stream's (``EventStream.resumed``).
    """

    CREATED = "created"
    CONNECTED = "connected"
    REGISTERED = "registered"
    SET_UP = "set up"
    WIRED = "wired"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SETUP_FAILED = "setup failed"
    REFUSED = "refused"
    ENDED = "ended"

    @property
    def meaning(self) -> str:
        """What being in this state means, for error messages."""
        return _MEANINGS[self]

    @property
    def registered(self) -> bool:
        """True once the controller's ``setup`` arrived (the host is one of its run's)."""
        return self in _REGISTERED

    @property
    def aim_set_up(self) -> bool:
        """True once ``AIM.setup()`` completed: the AIM needs its ``teardown``."""
        return self in _AIM_SET_UP

    @property
    def finished(self) -> bool:
        """True once the run ended (``done`` or ``failed`` sent): nothing left to abort."""
        return self in (HostState.DONE, HostState.FAILED)


_S = HostState

#: The legal moves: each state, and the states it may go to next. Every state but
#: ``ENDED`` may end (the host closes whatever happened: a timeout, a signal, an error).
TRANSITIONS: Mapping[HostState, frozenset[HostState]] = {
    _S.CREATED: frozenset({_S.CONNECTED, _S.ENDED}),
    _S.CONNECTED: frozenset({_S.REGISTERED, _S.REFUSED, _S.ENDED}),
    _S.REGISTERED: frozenset({_S.SET_UP, _S.SETUP_FAILED, _S.ENDED}),
    _S.SET_UP: frozenset({_S.WIRED, _S.SETUP_FAILED, _S.ENDED}),
    _S.WIRED: frozenset({_S.RUNNING, _S.ENDED}),
    _S.RUNNING: frozenset({_S.DONE, _S.FAILED, _S.ENDED}),
    _S.DONE: frozenset({_S.ENDED}),
    _S.FAILED: frozenset({_S.ENDED}),
    _S.SETUP_FAILED: frozenset({_S.ENDED}),
    _S.REFUSED: frozenset({_S.ENDED}),
    _S.ENDED: frozenset(),
}

_MEANINGS = {
    _S.CREATED: "built, not serving yet",
    _S.CONNECTED: "the AIM API socket is open, hello sent, waiting for setup",
    _S.REGISTERED: "setup received, AIM.setup() under way",
    _S.SET_UP: "inputs bound, AIM.setup() done, ready sent",
    _S.WIRED: "outputs connected, wired sent, waiting for start",
    _S.RUNNING: "start received, AIM.run() under way",
    _S.DONE: "the run ended well and done was sent",
    _S.FAILED: "the run failed and failed was sent",
    _S.SETUP_FAILED: "setting up (AIM.setup(), ready) failed and failed was sent",
    _S.REFUSED: "the controller answered hello with terminate",
    _S.ENDED: "closed, bye sent",
}

_REGISTERED = frozenset(
    {_S.REGISTERED, _S.SET_UP, _S.WIRED, _S.RUNNING, _S.DONE, _S.FAILED, _S.SETUP_FAILED}
)
_AIM_SET_UP = frozenset({_S.SET_UP, _S.WIRED, _S.RUNNING, _S.DONE, _S.FAILED})

#: What a host's ``bye`` says when it ended in one of these states and nothing cut it
#: short; any other state says ``exit``.
_OUTCOMES = {
    _S.DONE: "done",
    _S.FAILED: "failed",
    _S.SETUP_FAILED: "setup failed",
    _S.REFUSED: "refused",
}


@dataclass(frozen=True)
class Leaving:
    """Why the host must go before its AIM is done, and the exit status that says so."""

    reason: str
    status: int


@dataclass(frozen=True)
class Ending:
    """How a host ended: the state it was in, and the request to leave, if one came."""

    last: HostState
    leaving: Leaving | None

    @property
    def reason(self) -> str:
        """What the host's ``bye`` says."""
        if self.leaving is not None:
            return self.leaving.reason
        return _OUTCOMES.get(self.last, "exit")

    @property
    def status(self) -> int:
        """The host's exit status: 0 for a run that ended well, else 1 or the leaving's."""
        if self.leaving is not None:
            return self.leaving.status
        return 0 if self.last is HostState.DONE else 1


class HostLifecycle:
    """The state of one AIM host, moved only along ``TRANSITIONS``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = HostState.CREATED
        #: The first request to leave; later ones do not change why the host goes.
        self.leaving: Leaving | None = None
        #: Set when the host ends (the ``ENDED`` state's data).
        self.ending: Ending | None = None

    def to(self, wanted: HostState) -> None:
        """Move to ``wanted``; a move the table does not allow raises ``LifecycleError``."""
        if wanted not in TRANSITIONS[self.state]:
            raise LifecycleError(self._refusal(wanted))
        self.state = wanted

    def require(self, state: HostState, action: str) -> None:
        """Refuse ``action`` unless the host is in ``state``."""
        if self.state is not state:
            raise LifecycleError(
                f"cannot {action} AIM host {self.name!r}: it is {self.state.value} "
                f"({self.state.meaning}); {action} needs it {state.value} ({state.meaning})"
            )

    def leave(self, reason: str, status: int) -> bool:
        """Record a request to leave; True for the first one (which is kept)."""
        if self.leaving is not None:
            return False
        self.leaving = Leaving(reason, status)
        return True

    def end(self) -> Ending:
        """Move to ``ENDED``, keeping how the host ended."""
        ending = Ending(self.state, self.leaving)
        self.to(HostState.ENDED)
        self.ending = ending
        return ending

    @property
    def last(self) -> HostState:
        """The state the host is in, or the one it ended in."""
        return self.ending.last if self.ending is not None else self.state

    @property
    def registered(self) -> bool:
        """True once ``setup`` arrived, also after the host ended."""
        return self.last.registered

    @property
    def finished(self) -> bool:
        """True once the run ended (``done`` or ``failed`` sent), also after the host ended."""
        return self.last.finished

    def _refusal(self, wanted: HostState) -> str:
        here = f"AIM host {self.name!r} cannot go from {self.state.value} to {wanted.value}"
        if self.state is HostState.ENDED:
            return f"{here}: it has ended ({self.state.meaning}); a host serves once"
        sources = [s for s, nexts in TRANSITIONS.items() if wanted in nexts]
        first = " or ".join(f"{s.value} ({s.meaning})" for s in sources)
        return (
            f"{here}: it is {self.state.value} ({self.state.meaning}); "
            f"to become {wanted.value} it must first be {first}"
        )
