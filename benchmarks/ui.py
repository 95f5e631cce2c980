"""How fast the web UI answers: the job list with 1,000 jobs, and an event's way to the browser.

Run: ``python -m benchmarks.ui [--quick] [--jobs N]``

One real daemon (``aif controller start --ui 127.0.0.1:0`` on a temporary state
directory, one ``cpu`` instance, stopped at the end, also on error) serves every
measurement; each measurement is a function of the running ``Setup`` that returns its
numbers, listed in ``MEASURES`` (add one there):

* ``jobs_api``: ``N`` (1,000) held jobs are submitted through the User API (they never
  run), then ``GET /api/jobs`` (every job, newest first, with progress and best accuracy)
  is timed against the User API's own ``list`` of the same jobs from a Python
  ``aif.Client`` over ipc, the floor the UI builds on: ``jobs_api_ms_1000`` and the ratio.
* ``event_to_sse``: a small digits experiment runs while a server-sent event stream of
  it is open; for each finished epoch, the delay from the event's time (stamped where
  the simulator emitted it) to its arrival at the stream's reader: ``event_to_sse_ms``
  (median; p95 and max beside it). The target is well under 500 ms.
* ``browser``: the pages in headless Chromium (``/usr/bin/chromium``, driven by
  Playwright): ``jobs_page_render_ms_1000``, the job list with the 1,000 jobs drawn
  from the start of its navigation (target < 1 s), and ``epoch_to_chart_ms``, a finished
  epoch's event to the live chart's redraw with it (target < 500 ms).

The last line printed is one JSON object with every measure's numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The target for an event's way from the daemon to the browser, in ms.
EVENT_TARGET_MS = 500.0
#: A workflow the daemon accepts; submitted held, it never runs.
HELD_WORKFLOW = """\
name: held
aims:
  src: {type: source, params: {records: [1, 2, 3]}}
outputs: [src.out]
"""
#: The experiment whose epochs are streamed.
EXPERIMENT = {
    "name": "bench-sse",
    "dataset": {"name": "digits", "batch_size": 32, "max_train": 400, "max_test": 100},
    "model": {"convert": "all", "layers": ["Flatten", {"type": "Linear", "out_features": 10}]},
    "training": {"epochs": 40},
}
START_TIMEOUT = 60.0


@dataclass
class Setup:
    """The running daemon and its UI."""

    state_dir: Path
    base: str
    token: str
    jobs: int
    rounds: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


async def jobs_api(setup: Setup) -> dict[str, Any]:
    """``GET /api/jobs`` with ``setup.jobs`` jobs, against the User API's list."""
    import aiohttp

    from aif.daemon.client import Client

    workflow = setup.state_dir.parent / "held.yaml"
    workflow.write_text(HELD_WORKFLOW)
    started = time.perf_counter()
    with Client(state_dir=setup.state_dir, timeout=60) as client:
        for _ in range(setup.jobs):
            client.submit(workflow, hold=True)
        submit_s = time.perf_counter() - started
        states = ["held"]
        assert len(client.jobs(states)) >= setup.jobs
        client.jobs(states)  # warm-up
        floor = []
        for _ in range(setup.rounds):
            t0 = time.perf_counter()
            client.jobs(states)
            floor.append(time.perf_counter() - t0)
    async with aiohttp.ClientSession(setup.base, headers=setup.headers) as session:
        times = []
        for n in range(setup.rounds + 1):
            t0 = time.perf_counter()
            async with session.get("/api/jobs", params={"limit": "5000"}) as response:
                listed = (await response.json())["jobs"]
            if n:  # the first is a warm-up
                times.append(time.perf_counter() - t0)
            assert len(listed) >= setup.jobs, len(listed)
    api_s, floor_s = statistics.median(times), statistics.median(floor)
    print(
        f"GET /api/jobs with {setup.jobs} jobs: {_ms(api_s)} ms (median of {setup.rounds}); "
        f"the User API's list over ipc: {_ms(floor_s)} ms; ratio {api_s / floor_s:.2f}x "
        f"(submitting them took {submit_s:.1f} s)"
    )
    return {
        "jobs_api_ms": _ms(api_s),
        "jobs_api_ms_1000": _ms(api_s) if setup.jobs == 1000 else None,
        "user_api_list_ms": _ms(floor_s),
        "jobs_api_ratio": round(api_s / floor_s, 2),
    }


async def event_to_sse(setup: Setup) -> dict[str, Any]:
    """The delay from a finished epoch's event to its arrival on an open stream."""
    import aiohttp

    async with aiohttp.ClientSession(setup.base, headers=setup.headers) as session:
        async with session.post("/api/jobs", json={"experiment": EXPERIMENT}) as response:
            job = (await response.json())["job"]["id"]
        delays: list[float] = []
        timeout = aiohttp.ClientTimeout(total=120)
        async with session.get(f"/api/jobs/{job}/events", timeout=timeout) as response:
            event, data = "", ""
            async for raw in response.content:
                arrived = time.time()
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and event:
                    if event == "end":
                        break
                    row = json.loads(data)
                    if event == "progress" and "step" in row["data"]:
                        delays.append(arrived - row["time"])
                    event = ""
    assert delays, "no epoch came through the stream"
    delays.sort()
    median = statistics.median(delays)
    p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
    print(
        f"event -> SSE: median {_ms(median)} ms, p95 {_ms(p95)} ms, max {_ms(delays[-1])} ms "
        f"over {len(delays)} epochs (target < {EVENT_TARGET_MS:g} ms: "
        f"{'holds' if median < EVENT_TARGET_MS / 1000 else 'MISSED'})"
    )
    return {
        "event_to_sse_ms": _ms(median),
        "event_to_sse_p95_ms": _ms(p95),
        "event_to_sse_max_ms": _ms(delays[-1]),
        "event_to_sse_target_ms": EVENT_TARGET_MS,
    }


#: The browser: Debian's Chromium (scripts/setup.sh), never one downloaded.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The targets of the pages, in ms: the job list with 1,000 jobs drawn, and a finished
#: epoch on the live chart after the daemon's event.
RENDER_TARGET_MS = 1000.0
CHART_TARGET_MS = 500.0


async def browser(setup: Setup) -> dict[str, Any]:
    """The pages in headless Chromium: the job list drawn, and epochs on the live chart.

    ``jobs_page_render_ms_1000``: from the start of the navigation to ``/`` until the
    table with every job is on screen (HTML, scripts, ``GET /api/jobs``, the DOM and the
    frame that paints it; median of reloads; needs ``jobs_api``'s held jobs, so it runs
    after it).
    ``epoch_to_chart_ms``: the job page of a running experiment; for each epoch that
    arrives on its stream, the delay from the event's time (stamped where the simulator
    emitted it) to the chart's redraw with it (median; p95 and max beside it).
    """
    from playwright.async_api import async_playwright

    url = f"{setup.base}/?token={setup.token}"
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await chromium.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(url)
            rendered = f"#jobs-table[data-rendered='{min(setup.jobs, 1000)}'][data-painted-at]"
            renders = []
            for n in range(setup.rounds + 1):
                await page.goto(f"{setup.base}/")
                table = await page.wait_for_selector(rendered, timeout=60_000)
                assert table is not None
                if n:  # the first is a warm-up
                    renders.append(float(await table.get_attribute("data-painted-at") or "nan"))
            csrf = {c["name"]: c["value"] for c in await page.context.cookies()}["aif_csrf"]
            reply = await page.request.post(
                f"{setup.base}/api/jobs",
                data={"experiment": {**EXPERIMENT, "name": "bench-chart"}},
                headers={"X-AIF-CSRF": csrf},
            )
            assert reply.status == 201, await reply.text()
            job = (await reply.json())["job"]["id"]
            await page.goto(f"{setup.base}/jobs/{job}")
            await page.wait_for_selector(
                "main:is([data-state='succeeded'], [data-state='failed'])", timeout=180_000
            )
            epochs = await page.evaluate("() => window.__aifEpochs")
        finally:
            await chromium.close()
    seen: dict[int, float] = {}
    for e in epochs:
        if e.get("eventTime") is not None and e["epoch"] not in seen:
            seen[e["epoch"]] = (e["drawn"] - e["eventTime"] * 1000) / 1000
    delays = sorted(seen.values())
    assert delays, "no epoch reached the chart live"
    render = statistics.median(renders) / 1000
    median = statistics.median(delays)
    p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
    print(
        f"jobs page with {min(setup.jobs, 1000)} jobs drawn in {_ms(render)} ms (median of "
        f"{setup.rounds}; target < {RENDER_TARGET_MS:g} ms: "
        f"{'holds' if render < RENDER_TARGET_MS / 1000 else 'MISSED'})"
    )
    print(
        f"event -> chart: median {_ms(median)} ms, p95 {_ms(p95)} ms, max {_ms(delays[-1])} ms "
        f"over {len(delays)} epochs (target < {CHART_TARGET_MS:g} ms: "
        f"{'holds' if median < CHART_TARGET_MS / 1000 else 'MISSED'})"
    )
    return {
        "jobs_page_render_ms": _ms(render),
        "jobs_page_render_ms_1000": _ms(render) if setup.jobs == 1000 else None,
        "epoch_to_chart_ms": _ms(median),
        "epoch_to_chart_p95_ms": _ms(p95),
        "epoch_to_chart_max_ms": _ms(delays[-1]),
        "epoch_to_chart_target_ms": CHART_TARGET_MS,
    }


#: Each measure: its name and the function that takes it.
MEASURES: list[tuple[str, Callable[[Setup], Awaitable[dict[str, Any]]]]] = [
    ("jobs_api", jobs_api),
    ("event_to_sse", event_to_sse),
    ("browser", browser),
]


def start_daemon(state_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A daemon with the UI on a free loopback port; returns it and the UI's URL."""
    log = open(state_dir.parent / "daemon.log", "wb")  # noqa: SIM115 (kept for the daemon's life)
    command = ["controller", "start", "--state-dir", str(state_dir), "--instances", "cpu=1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "aif", *command, "--ui", "127.0.0.1:0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT
    url_file = state_dir / "ui.url"
    while time.monotonic() < deadline:
        if (state_dir / "controller.json").exists() and url_file.exists():
            return proc, url_file.read_text().strip()
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited {proc.returncode}; see {log.name}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the daemon did not serve in {START_TIMEOUT:g} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 jobs, fewer rounds")
    parser.add_argument("--jobs", type=int, default=1000, help="held jobs listed (default 1000)")
    parser.add_argument("--rounds", type=int, default=20, help="timed lists (default 20)")
    args = parser.parse_args(argv)
    jobs, rounds = (100, 5) if args.quick else (args.jobs, args.rounds)
    out: dict[str, Any] = {"jobs": jobs}
    with tempfile.TemporaryDirectory(prefix="aif-bench-ui-") as tmp:
        state_dir = Path(tmp) / "state"
        state_dir.mkdir()
        proc, url = start_daemon(state_dir)
        base, _, token = url.partition("/?token=")
        try:
            setup = Setup(state_dir, base, token, jobs, rounds)
            for _name, measure in MEASURES:
                out.update(asyncio.run(measure(setup)))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
