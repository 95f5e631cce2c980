"""Warm-ups (``module:function`` entries of ``warm_modules``) run once in the warm
worker, with torch held to one thread, before it forks: every fork sees what they built
and gets torch's own thread count back; a warm-up that leaves a thread running stops
the worker from starting, saying so; with warm-ups off (``aif run``'s pool) none runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aif.controller.controller import Controller
from aif.controller.launchers.warm import WorkerPool
from aif.controller.run import RunState
from aif.errors import LifecycleError
from aif.host.warm import ServeAIM
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration

WORKFLOW = """
name: warmed
aims:
  one: {type: tests.helpers.warm_aims:WarmedProbe, placement: process}
  two: {type: tests.helpers.warm_aims:WarmedProbe, placement: process}
"""

BROKEN = """
name: broken
aims:
  b: {type: tests.helpers.warm_aims:BrokenWarm, placement: process}
"""


async def run(tmp_path: Path, pool: WorkerPool) -> dict[str, Any]:
    async with Controller(tmp_path, worker_pool=pool) as controller:
        result = await controller.run_workflow(resolve(load_workflow_text(WORKFLOW)), timeout=120)
    assert result.state is RunState.SUCCEEDED, result.error
    return result.results


@pytest.mark.timeout(180)
async def test_a_warm_up_runs_once_in_the_worker_and_every_fork_sees_it(tmp_path: Path) -> None:
    import torch

    results = await run(tmp_path, WorkerPool())
    one, two = results["one"], results["two"]
    assert one["ppid"] == two["ppid"] == one["warmed_in"] == two["warmed_in"]  # the worker
    assert one["warm_up_threads"] == [1]  # once, on one thread
    assert one["threads"] == two["threads"] == torch.get_num_threads()  # given back


@pytest.mark.timeout(180)
async def test_without_warm_ups_none_runs(tmp_path: Path) -> None:
    results = await run(tmp_path, WorkerPool(warm_up=False))
    assert results["one"]["warmed_in"] is None and results["one"]["warm_up_threads"] == []


@pytest.mark.timeout(180)
async def test_a_warm_up_that_leaves_a_thread_stops_the_worker_saying_so(tmp_path: Path) -> None:
    pool = WorkerPool()
    job = ServeAIM(
        job=1,
        controller="ipc:///nowhere",
        aim="doomed",
        workflow="w",
        modules=["tests.helpers.warm_aims:warm_up_leaving_a_thread"],
    )
    with pytest.raises(LifecycleError, match="did not start") as caught:
        await pool.fork(job)
    await pool.close()
    assert "warming up tests.helpers.warm_aims:warm_up_leaving_a_thread failed" in str(caught.value)


@pytest.mark.timeout(180)
async def test_a_type_whose_module_is_missing_fails_its_run_and_the_next_run_is_served(
    tmp_path: Path,
) -> None:
    broken = (
        "name: broken\naims:\n  b: {type: tests.helpers.warm_aims:BrokenWarm, placement: process}\n"
    )
    pool = WorkerPool()
    async with Controller(tmp_path, worker_pool=pool) as controller:
        failed = await controller.run_workflow(resolve(load_workflow_text(broken)), timeout=120)
        assert failed.state is RunState.FAILED
        assert "aif_tests_no_such_module" in (failed.error or "")
        served = await controller.run_workflow(resolve(load_workflow_text(WORKFLOW)), timeout=120)
    assert served.state is RunState.SUCCEEDED, served.error
    assert served.results["one"]["warmed_in"] == served.results["one"]["ppid"]
