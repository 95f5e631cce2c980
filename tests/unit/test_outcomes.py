"""What the end of an attempt means for its job: every rule of ``outcomes.settle``."""

from __future__ import annotations

import pytest

from aif.controller.plan import PlannedAIM
from aif.controller.run import RunState
from aif.daemon.outcomes import Outcome, settle
from aif.daemon.records import JobState


def aim(restart: str = "on-failure", max_restarts: int = 2, backoff: float = 0.5) -> PlannedAIM:
    return PlannedAIM(
        name="sim",
        type="analog-simulator",
        class_path="x:Y",
        placement="process",
        params={},
        heartbeat_timeout=5.0,
        input_ports=(),
        port_types={},
        restart=restart,
        max_restarts=max_restarts,
        restart_backoff=backoff,
    )


def outcome(
    state: RunState = RunState.FAILED,
    *,
    cancelled: bool = False,
    draining: bool = False,
    on_restart: str = "requeue",
    failed: PlannedAIM | None = None,
    restarts: int = 0,
) -> Outcome:
    return settle(
        state,
        "AIM 'sim' failed: killed by SIGKILL" if state is RunState.FAILED else None,
        cancelled=cancelled,
        draining=draining,
        on_restart=on_restart,  # type: ignore[arg-type]
        failed=failed,
        restarts=restarts,
    )


def test_success_and_user_actions_are_final() -> None:
    assert outcome(RunState.SUCCEEDED).state is JobState.SUCCEEDED
    assert outcome(RunState.STOPPED).state is JobState.STOPPED
    cancelled = outcome(RunState.STOPPED, cancelled=True)
    assert cancelled.state is JobState.CANCELLED and cancelled.final
    # a cancel wins even over a failure the stop caused
    assert outcome(cancelled=True, failed=aim()).state is JobState.CANCELLED


@pytest.mark.parametrize(
    ("policy", "state"), [("requeue", JobState.QUEUED), ("interrupt", JobState.INTERRUPTED)]
)
def test_a_drain_follows_the_workflows_on_restart(policy: str, state: JobState) -> None:
    result = outcome(RunState.STOPPED, draining=True, on_restart=policy)
    assert result.state is state
    assert "the controller was stopped while it ran" in result.detail
    assert result.retry_in is None


def test_a_failure_without_a_restart_policy_fails_with_its_cause() -> None:
    for failed in (None, aim(restart="never")):
        result = outcome(failed=failed)
        assert result.state is JobState.FAILED
        assert result.detail == "AIM 'sim' failed: killed by SIGKILL"


def test_on_failure_retries_with_a_doubling_backoff_then_gives_up() -> None:
    first = outcome(failed=aim(), restarts=0)
    assert first.state is JobState.QUEUED and first.retry_in == 0.5
    assert first.detail.startswith("retrying in 0.5 s (restart 1 of 2 for AIM 'sim') after:")
    second = outcome(failed=aim(), restarts=1)
    assert second.retry_in == 1.0 and "restart 2 of 2" in second.detail
    last = outcome(failed=aim(), restarts=2)
    assert last.state is JobState.FAILED and last.final
    assert last.detail.endswith("(gave up after 2 restarts)")
    assert outcome(failed=aim(max_restarts=0)).state is JobState.FAILED
