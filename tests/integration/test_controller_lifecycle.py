"""Controller phases and their failure paths, with real sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from aif import CleanupError, Controller, LifecycleError, RunState
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration

RELAY = "name: r\naims:\n  relay: {type: relay}\ninputs:\n  relay.in: [1]\n"


async def test_launch_before_start_names_the_phase(tmp_path: Path) -> None:
    controller = Controller(tmp_path)
    with pytest.raises(LifecycleError, match="the controller is 'created', not 'running'"):
        await controller.launch(resolve(load_workflow_text(RELAY)))


async def test_setup_twice_is_refused(tmp_path: Path) -> None:
    async with Controller(tmp_path) as controller:
        with pytest.raises(LifecycleError, match="cannot setup: the controller is 'running'"):
            await controller.setup()


async def test_cleanup_runs_every_step_in_reverse_and_collects_errors(tmp_path: Path) -> None:
    controller = Controller(tmp_path)
    await controller.setup()
    order: list[str] = []

    def step(name: str, fail: bool) -> None:
        order.append(name)
        if fail:
            raise RuntimeError(f"{name} broke")

    controller._on_cleanup("a", lambda: step("a", True))
    controller._on_cleanup("b", lambda: step("b", False))
    controller._on_cleanup("c", lambda: step("c", True))
    with pytest.raises(CleanupError) as caught:
        await controller.cleanup()
    assert order == ["c", "b", "a"]
    assert [str(e) for e in caught.value.errors] == ["c broke", "a broke"]
    assert controller.phase.value == "closed"


async def test_a_remote_aim_that_never_comes_fails_with_how_to_start_it(tmp_path: Path) -> None:
    wf = resolve(load_workflow_text("name: w\naims:\n  probe: {type: source, placement: remote}\n"))
    async with Controller(tmp_path, tcp="tcp://127.0.0.1:*", ready_timeout=0.5) as controller:
        run = await controller.launch(wf)
        result = await controller.wait_run(run, timeout=5)
        address = controller.endpoints["tcp"]
    assert result.state is RunState.FAILED
    assert result.error == (
        "AIM 'probe' failed: did not become ready within 0.5 s (remote host, state launching); "
        f"start it with: aif aim serve source --controller {address} --name probe"
    )


async def test_aims_use_their_own_and_global_storage(tmp_path: Path) -> None:
    wf = resolve(
        load_workflow_text(
            "name: s\naims:\n"
            "  a: {type: 'tests.helpers.aims:StorageUser', placement: process}\n"
            "  b: {type: 'tests.helpers.aims:StorageUser'}\n"
            "inputs:\n  a.in: [one, two]\n  b.in: [three]\n"
        )
    )
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(wf, timeout=60)
    assert result.ok, result.error
    assert result.results["a"]["own"] == ["notes/one", "notes/two"]
    assert result.results["b"]["own"] == ["notes/three"]
    assert result.results["a"]["secure"] is False  # the basic profile
    assert (tmp_path / "aims" / "a" / "notes" / "one").read_bytes() == b"one"
    assert (tmp_path / "global" / "shared" / "b-three").read_bytes() == b"x"


async def test_garbage_on_the_aim_api_is_counted_and_the_controller_goes_on(
    tmp_path: Path,
) -> None:
    import asyncio

    import msgpack
    import zmq

    async with Controller(tmp_path) as controller:
        assert controller.ctx is not None
        rogue = controller.ctx.socket(zmq.DEALER)
        rogue.connect(controller.endpoints["ipc"])
        try:
            for frames in (
                [b"\xc1"],  # not msgpack
                [msgpack.packb({"op": "hello"})],  # fields missing
                [msgpack.packb({"op": "launch-missiles", "aim": "x"})],  # unknown op
                [b"a", b"b"],  # wrong frame count
            ):
                await rogue.send_multipart(frames)
            for _ in range(100):
                if controller.malformed >= 4:
                    break
                await asyncio.sleep(0.02)
            assert controller.malformed == 4
            result = await controller.run_workflow(resolve(load_workflow_text(RELAY)), timeout=30)
        finally:
            rogue.close(linger=0)
    assert result.ok, result.error
