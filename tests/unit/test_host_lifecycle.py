"""The AIM host's lifecycle table: the moves it allows, the ones it refuses, and why.

A host walks the AIM API in order (``aif.host.lifecycle``); a move out of order is a
``LifecycleError`` that names the state, the wanted one, and what must happen first.
How a host ended (its ``bye`` reason, its exit status) is derived from the state it
ended in and the first request to leave.
"""

from __future__ import annotations

import asyncio

import pytest
import zmq.asyncio

from aif.errors import LifecycleError
from aif.host.host import AIMHost
from aif.host.lifecycle import TRANSITIONS, HostLifecycle, HostState

S = HostState

#: Every way through a host's life, as the host walks it.
PATHS = [
    [S.CONNECTED, S.REGISTERED, S.SET_UP, S.WIRED, S.RUNNING, S.DONE, S.ENDED],
    [S.CONNECTED, S.REGISTERED, S.SET_UP, S.WIRED, S.RUNNING, S.FAILED, S.ENDED],
    [S.CONNECTED, S.REGISTERED, S.SETUP_FAILED, S.ENDED],
    [S.CONNECTED, S.REGISTERED, S.SET_UP, S.SETUP_FAILED, S.ENDED],  # ready not sent
    [S.CONNECTED, S.REFUSED, S.ENDED],
    [S.CONNECTED, S.ENDED],  # no answer, or a leave before setup
    [S.ENDED],  # the controller's address does not connect
    [S.CONNECTED, S.REGISTERED, S.SET_UP, S.ENDED],  # terminated before wiring
    [S.CONNECTED, S.REGISTERED, S.SET_UP, S.WIRED, S.ENDED],  # terminated before start
    [S.CONNECTED, S.REGISTERED, S.SET_UP, S.WIRED, S.RUNNING, S.ENDED],  # cut short
    [S.CONNECTED, S.REGISTERED, S.ENDED],  # a leave while AIM.setup() runs
]


def walk(path: list[HostState]) -> HostLifecycle:
    life = HostLifecycle("relay")
    for state in path:
        life.to(state)
    return life


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "-".join(s.name for s in p))
def test_each_way_through_a_hosts_life_is_legal(path: list[HostState]) -> None:
    life = walk(path)
    assert life.state is path[-1]


def test_the_table_covers_every_state_and_every_path_uses_only_its_moves() -> None:
    assert set(TRANSITIONS) == set(HostState)
    moves = {(a, b) for path in PATHS for a, b in zip([S.CREATED, *path], path, strict=False)}
    table = {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts}
    assert moves == table  # every legal move is walked by some path above
    # every state may end, once; nothing follows the end
    assert all(S.ENDED in TRANSITIONS[s] for s in HostState if s is not S.ENDED)
    assert TRANSITIONS[S.ENDED] == frozenset()


ILLEGAL = [
    (S.CREATED, S.WIRED),
    (S.CREATED, S.REGISTERED),
    (S.CONNECTED, S.SET_UP),
    (S.REGISTERED, S.RUNNING),
    (S.SET_UP, S.RUNNING),
    (S.WIRED, S.DONE),
    (S.RUNNING, S.WIRED),
    (S.DONE, S.FAILED),
    (S.REFUSED, S.REGISTERED),
    (S.SETUP_FAILED, S.SET_UP),
]


@pytest.mark.parametrize(("here", "wanted"), ILLEGAL, ids=lambda s: s.name)
def test_a_move_out_of_order_is_refused_and_changes_nothing(
    here: HostState, wanted: HostState
) -> None:
    assert wanted not in TRANSITIONS[here]
    path = next(p[: p.index(here) + 1] for p in PATHS if here in p) if here is not S.CREATED else []
    life = walk(path)
    with pytest.raises(LifecycleError) as caught:
        life.to(wanted)
    text = str(caught.value)
    assert f"from {here.value} to {wanted.value}" in text
    assert "'relay'" in text
    assert life.state is here


def test_the_error_says_what_must_happen_first() -> None:
    life = walk([S.CONNECTED])
    with pytest.raises(LifecycleError) as caught:
        life.to(S.WIRED)
    assert str(caught.value) == (
        "AIM host 'relay' cannot go from connected to wired: it is connected (the AIM API "
        "socket is open, hello sent, waiting for setup); to become wired it must first be "
        "set up (inputs bound, AIM.setup() done, ready sent)"
    )
    with pytest.raises(LifecycleError, match=r"to become running it must first be wired \("):
        life.to(S.RUNNING)


def test_an_ended_host_moves_no_more() -> None:
    life = walk([S.CONNECTED, S.ENDED])
    for wanted in HostState:
        with pytest.raises(LifecycleError, match=r"it has ended .*; a host serves once"):
            life.to(wanted)


def test_require_names_the_state_and_the_one_needed() -> None:
    life = walk([S.CONNECTED])
    life.require(S.CONNECTED, "serve")
    with pytest.raises(LifecycleError) as caught:
        life.require(S.CREATED, "serve")
    assert str(caught.value) == (
        "cannot serve AIM host 'relay': it is connected (the AIM API socket is open, hello "
        "sent, waiting for setup); serve needs it created (built, not serving yet)"
    )


@pytest.mark.parametrize(
    ("path", "reason", "status"),
    [
        (PATHS[0], "done", 0),
        (PATHS[1], "failed", 1),
        (PATHS[2], "setup failed", 1),
        (PATHS[4], "refused", 1),
        (PATHS[5], "exit", 1),
        (PATHS[6], "exit", 1),
        (PATHS[8], "exit", 1),
        (PATHS[9], "exit", 1),
        (PATHS[10], "exit", 1),
    ],
)
def test_the_bye_reason_and_exit_status_follow_from_the_last_state(
    path: list[HostState], reason: str, status: int
) -> None:
    life = walk(path[:-1])
    ending = life.end()
    assert life.state is S.ENDED
    assert life.ending == ending
    assert ending.last is (path[-2] if len(path) > 1 else S.CREATED)
    assert (ending.reason, ending.status) == (reason, status)


def test_the_first_request_to_leave_wins_and_overrides_the_outcome() -> None:
    life = walk(PATHS[0][:-1])  # done, tearing down
    assert life.leave("interrupted by SIGINT", 130)
    assert not life.leave("lost the controller at tcp://a:1", 1)
    ending = life.end()
    assert (ending.reason, ending.status) == ("interrupted by SIGINT", 130)


def test_registered_and_finished_outlive_the_end() -> None:
    life = walk([S.CONNECTED])
    assert not life.registered and not life.finished
    life.to(S.REGISTERED)
    assert life.registered and not life.finished
    for state in (S.SET_UP, S.WIRED, S.RUNNING, S.DONE):
        life.to(state)
    assert life.registered and life.finished
    life.end()
    assert life.registered and life.finished  # from the state it ended in
    refused = walk([S.CONNECTED, S.REFUSED, S.ENDED])
    assert not refused.registered and not refused.finished


def test_only_a_set_up_aim_is_torn_down() -> None:
    torn = {s for s in HostState if s.aim_set_up}
    assert torn == {S.SET_UP, S.WIRED, S.RUNNING, S.DONE, S.FAILED}


def test_a_host_serves_once() -> None:
    async def serve_an_ended_host() -> None:
        ctx = zmq.asyncio.Context()
        try:
            host = AIMHost(ctx, "inproc://nobody", "relay")
            assert host.lifecycle.state is S.CREATED
            host.lifecycle.to(S.ENDED)
            with pytest.raises(LifecycleError, match="cannot serve AIM host 'relay': it is ended"):
                await host.serve()
        finally:
            ctx.destroy(linger=0)

    asyncio.run(serve_an_ended_host())
