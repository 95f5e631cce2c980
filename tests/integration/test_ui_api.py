"""The web UI's HTTP API against a real daemon (``controller start --ui``), over real HTTP.

One daemon serves every test of this module; each test talks to it with aiohttp's
client, as a browser (token cookie, CSRF header) or as a script (Bearer token).
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers.daemon import START, DaemonProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def tiny(name: str, epochs: int = 2, lr: float = 0.1) -> dict[str, Any]:
    """An experiment that runs in well under a second."""
    return {
        "name": name,
        "dataset": {"name": "digits", "batch_size": 32, "max_train": 200, "max_test": 100},
        "model": {"convert": "all", "layers": ["Flatten", {"type": "Linear", "out_features": 10}]},
        "training": {"epochs": epochs, "optimizer": {"name": "AnalogSGD", "lr": lr}},
    }


class UI:
    """Where the UI of the module's daemon is, and its token."""

    def __init__(self, url: str, state_dir: Path) -> None:
        self.url = url
        self.state_dir = state_dir
        self.base, _, self.token = url.partition("/?token=")

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    state_dir = tmp_path_factory.mktemp("ui") / "state"
    proc = DaemonProcess(state_dir, "--ui", "127.0.0.1:0", "--instances", "cpu=2").start()
    try:
        url_file = state_dir / "ui.url"
        assert url_file.stat().st_mode & 0o077 == 0  # owner-only
        yield UI(url_file.read_text().strip(), state_dir)
    finally:
        assert proc.stop() == 0, proc.text()
    assert not (state_dir / "ui.url").exists()


@pytest.fixture
async def script(ui: UI) -> AsyncIterator[aiohttp.ClientSession]:
    """A non-browser client: the Bearer token on every request."""
    async with aiohttp.ClientSession(ui.base, headers=ui.bearer) as session:
        yield session


@pytest.fixture
async def browser(ui: UI) -> AsyncIterator[aiohttp.ClientSession]:
    """A browser-like client that opened the printed URL (so it holds the cookies)."""
    async with aiohttp.ClientSession(ui.base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"/?token={ui.token}") as response:
            assert response.status == 200
        yield s


async def wait_final(script: aiohttp.ClientSession, job: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with script.get(f"/api/jobs/{job}") as response:
            detail = await response.json()
        if detail["job"]["ended"] is not None:
            return detail
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job} did not end in {timeout} s")


async def submit(script: aiohttp.ClientSession, body: dict[str, Any]) -> str:
    async with script.post("/api/jobs", json=body) as response:
        data = await response.json()
        assert response.status == 201, data
    return str(data["job"]["id"])


# -- who may use it ---------------------------------------------------------------------------


async def test_the_token_is_needed_and_the_printed_url_sets_the_cookies(ui: UI) -> None:
    async with aiohttp.ClientSession(ui.base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get("/api/info") as response:
            assert response.status == 401
            assert "error" in await response.json()
        async with s.get("/") as response:
            assert response.status == 401
            assert "printed" in await response.text()
        async with s.get("/api/info", headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with s.get("/?token=wrong") as response:
            assert response.status == 401
        async with s.get(f"/?token={ui.token}") as response:
            assert response.status == 200
            assert response.cookies["aif_token"]["httponly"]
            assert response.cookies["aif_token"]["samesite"] == "Strict"
        async with s.get("/api/info") as response:  # the cookie now
            assert response.status == 200
            info = await response.json()
        assert info["daemon"]["pid"] > 0
        csrf = {c.key: c.value for c in s.cookie_jar}["aif_csrf"]
        assert info["csrf"] == csrf and csrf != ui.token


async def test_a_post_needs_the_csrf_header_and_its_own_origin(
    ui: UI, browser: aiohttp.ClientSession
) -> None:
    body = {"experiment": tiny("csrf")}
    async with browser.post("/api/check", json=body) as response:
        assert response.status == 403
        assert "X-AIF-CSRF" in (await response.json())["error"]
    csrf = {c.key: c.value for c in browser.cookie_jar}["aif_csrf"]
    async with browser.post("/api/check", json=body, headers={"X-AIF-CSRF": "nope"}) as response:
        assert response.status == 403
    evil = {"X-AIF-CSRF": csrf, "Origin": "http://evil.example"}
    async with browser.post("/api/check", json=body, headers=evil) as response:
        assert response.status == 403
    rebound = {"X-AIF-CSRF": csrf, "Host": "evil.example:80"}
    async with browser.post("/api/check", json=body, headers=rebound) as response:
        assert response.status == 403
    own = {"X-AIF-CSRF": csrf, "Origin": ui.base}
    async with browser.post("/api/check", json=body, headers=own) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["ok"] is True


def test_aif_ui_and_controller_status_show_the_url_of_the_serving_daemon(ui: UI) -> None:
    for command in (["ui"], ["controller", "status"]):
        shown = subprocess.run(
            [sys.executable, "-m", "aif", *command, "--state-dir", str(ui.state_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert ui.url in shown.stdout


# -- malformed requests name the field ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/check", b"{not json", 400, "body"),
        ("/api/check", b"[1, 2]", 400, "body"),
        ("/api/check", b'{"experiment": 5}', 400, "experiment"),
        ("/api/check", b'{"yaml": 5}', 400, "yaml"),
        ("/api/check", b'{"yaml": "a: [1"}', 400, "yaml"),
        (
            "/api/jobs",
            json.dumps({"experiment": tiny("p"), "priority": "high"}).encode(),
            400,
            "priority",
        ),
        ("/api/jobs", json.dumps({"experiment": tiny("n"), "name": 7}).encode(), 400, "name"),
        ("/api/jobs", json.dumps({"experiment": tiny("x"), "colour": 1}).encode(), 400, "colour"),
        ("/api/check", b'{"experiment": {}, "extra": 1}', 400, "extra"),
        ("/api/compare", b'{"jobs": ["one"]}', 400, "jobs"),
        ("/api/compare", b'{"jobs": ["a", 5]}', 400, "jobs.1"),
        ("/api/compare", b'{"jobs": ["no-such-a", "no-such-b"]}', 404, "jobs.0"),
        ("/api/jobs/no-such-job/cancel", b"{}", 404, "id"),
    ],
)
async def test_malformed_requests_get_a_4xx_naming_the_field(
    script: aiohttp.ClientSession, path: str, body: bytes, status: int, field: str
) -> None:
    headers = {"Content-Type": "application/json"}
    async with script.post(path, data=body, headers=headers) as response:
        data = await response.json()
        assert response.status == status, data
    assert data["field"] == field and data["error"]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("/api/jobs?limit=0", 400, "limit"),
        ("/api/jobs?limit=many", 400, "limit"),
        ("/api/jobs?state=bogus", 400, "state"),
        ("/api/jobs/no-such-job", 404, "id"),
        ("/api/jobs/no-such-job/results.zip", 404, "id"),
        ("/api/jobs/no-such-job/events?after=x", 400, "after"),
    ],
)
async def test_bad_queries_get_a_4xx_naming_the_field(
    script: aiohttp.ClientSession, query: str, status: int, field: str
) -> None:
    async with script.get(query) as response:
        data = await response.json()
        assert response.status == status, data
    assert data["field"] == field


async def test_an_experiment_with_a_bad_field_is_refused_with_422(
    script: aiohttp.ClientSession,
) -> None:
    bad = tiny("bad")
    bad["training"]["epoch"] = 3  # not a field
    async with script.post("/api/jobs", json={"experiment": bad}) as response:
        data = await response.json()
        assert response.status == 422, data
    assert data["field"] == "training.epoch"
    assert any(p["field"] == "training.epoch" for p in data["problems"])


async def test_a_body_over_the_limit_is_refused(script: aiohttp.ClientSession) -> None:
    huge = io.BytesIO(json.dumps({"yaml": "x" * (2**20 + 10)}).encode())
    headers = {"Content-Type": "application/json"}
    async with script.post("/api/check", data=huge, headers=headers) as response:
        assert response.status == 413
        assert (await response.json())["field"] == "body"


# -- composing ------------------------------------------------------------------------------


async def test_a_template_checks_ok_and_the_schema_names_aihwkits_classes(
    script: aiohttp.ClientSession,
) -> None:
    async with script.get("/api/templates") as response:
        templates = (await response.json())["templates"]
    by_id = {t["id"]: t for t in templates}
    assert "shipped/hwa-cnn" in by_id
    assert any(t["id"].startswith("aihwkit/") for t in templates)
    body = {"experiment": by_id["shipped/hwa-cnn"]["experiment"]}
    async with script.post("/api/check", json=body) as response:
        checked = await response.json()
    assert checked["ok"] is True, checked["problems"]
    assert checked["experiment"]["name"] == "hwa-cnn"
    model = "model: {convert: all, layers: [Flatten, {type: Linear, out_features: 10}]}"
    yaml_body = {"yaml": f"name: y\n{model}\n"}
    async with script.post("/api/check", json=yaml_body) as response:
        assert (await response.json())["ok"] is True
    async with script.get("/api/schema") as response:
        schema = await response.json()
    assert "InferenceRPUConfig" in schema["names"]["families"]
    assert "PCMLikeNoiseModel" in schema["names"]["noise_models"]
    assert schema["schema"]["title"] == "Experiment"


# -- running, watching, controlling, comparing ----------------------------------------------


async def read_stream(response: aiohttp.ClientResponse) -> list[tuple[str, str, Any]]:
    """The (id, event, data) of a server-sent event stream, until ``end``."""
    events: list[tuple[str, str, Any]] = []
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "event" in fields:
                events.append((fields["id"], fields["event"], json.loads(fields["data"])))
                if fields["event"] == "end":
                    return events
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value
    return events


async def test_a_submitted_experiment_runs_streams_and_reports(
    script: aiohttp.ClientSession,
) -> None:
    job = await submit(script, {"experiment": tiny("stream", epochs=3), "name": "Stream Me!"})
    assert job.startswith("stream-me-")
    async with script.get(f"/api/jobs/{job}/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = await asyncio.wait_for(read_stream(response), 60)
    names = [name for _, name, _ in events]
    assert names[-1] == "end" and events[-1][2]["state"] == "succeeded"
    metrics = [data for _, name, data in events if name == "metrics"]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert "progress" in names and "state" in names
    seqs = [int(i) for i, name, _ in events if name not in ("metrics", "end")]
    assert seqs == sorted(seqs)
    # after=SEQ: only what came later
    async with script.get(f"/api/jobs/{job}/events?after={seqs[-2]}") as response:
        later = await asyncio.wait_for(read_stream(response), 30)
    assert [int(i) for i, n, _ in later if n not in ("metrics", "end")] == [seqs[-1]]

    detail = await wait_final(script, job)
    assert detail["job"]["state"] == "succeeded"
    assert detail["job"]["best_accuracy"] is not None
    assert detail["experiments"][0]["name"] == "stream"
    assert [m["epoch"] for m in detail["metrics"]] == [1, 2, 3]
    assert detail["results"][0]["status"] == "completed"
    assert "drift_mean" in detail["results"][0]
    assert detail["log"] and {"seq", "time", "topic", "source", "text"} <= set(detail["log"][0])

    async with script.get(f"/api/jobs/{job}/results.zip") as response:
        assert response.status == 200
        archive = zipfile.ZipFile(io.BytesIO(await response.read()))
    assert {"results.json", "metrics.csv"} <= set(archive.namelist())

    async with script.get("/api/jobs", params={"q": "stream-me"}) as response:
        listed = (await response.json())["jobs"]
    assert [j["id"] for j in listed] == [job]
    assert listed[0]["best_accuracy"] == detail["job"]["best_accuracy"]


async def test_suspend_resume_and_cancel_a_running_job(
    script: aiohttp.ClientSession, browser: aiohttp.ClientSession
) -> None:
    job = await submit(script, {"experiment": tiny("long", epochs=10_000)})
    deadline = time.monotonic() + 60
    while True:  # running, and past its first epoch
        async with script.get("/api/jobs", params={"q": job}) as response:
            row = (await response.json())["jobs"][0]
        if row["state"] == "running" and row["progress"] is not None:
            break
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.1)
    assert row["progress"]["epochs"] == 10_000
    csrf = {"X-AIF-CSRF": {c.key: c.value for c in browser.cookie_jar}["aif_csrf"]}
    async with browser.post(f"/api/jobs/{job}/suspend", headers=csrf) as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["job"]["state"] == "suspended"
    async with browser.post(f"/api/jobs/{job}/suspend", headers=csrf) as response:
        assert response.status == 409  # already suspended
        assert (await response.json())["field"] == "state"
    async with browser.post(f"/api/jobs/{job}/resume", headers=csrf) as response:
        assert (await response.json())["job"]["state"] == "running"
    async with browser.post(f"/api/jobs/{job}/cancel", headers=csrf) as response:
        assert response.status == 200
    detail = await wait_final(script, job)
    assert detail["job"]["state"] == "cancelled"


async def test_two_finished_jobs_compare_by_what_differs(script: aiohttp.ClientSession) -> None:
    first = await submit(script, {"experiment": tiny("cmp", epochs=2, lr=0.1)})
    second = await submit(script, {"experiment": tiny("cmp", epochs=3, lr=0.05)})
    for job in (first, second):
        await wait_final(script, job)
    async with script.post("/api/compare", json={"jobs": [first, second]}) as response:
        data = await response.json()
        assert response.status == 200, data
    differing = {d["field"]: d["values"] for d in data["differences"]}
    assert differing["training.epochs"] == {first: 2, second: 3}
    assert differing["training.optimizer.lr"] == {first: 0.1, second: 0.05}
    assert "dataset.max_train" not in differing
    assert [j["id"] for j in data["jobs"]] == [first, second]
    assert len(data["jobs"][1]["metrics"]) == 3 and data["jobs"][0]["results"]


async def test_aif_ui_starts_a_daemon_with_the_ui_on_loopback(tmp_path: Path) -> None:
    from tests.helpers.daemon import ROOT

    state_dir = tmp_path / "state"
    command = [sys.executable, "-m", "aif", "ui", "--port", "0", "--state-dir", str(state_dir)]
    proc = subprocess.Popen(
        [*command, "--instances", "cpu=1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert line.startswith("aif web UI: http://127.0.0.1:"), line
        started = UI(line.split(": ", 1)[1].strip(), state_dir)
        assert (state_dir / "ui.url").read_text().strip() == started.url
        async with (
            aiohttp.ClientSession(started.base, headers=started.bearer) as session,
            session.get("/api/jobs") as response,
        ):
            assert (await response.json()) == {"jobs": []}
    finally:
        proc.terminate()
        code = proc.wait(30)
        proc.stdout.close()
    assert code == 0


def test_a_ui_port_in_use_stops_the_start_with_the_reason(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *START,
                "--instances",
                "cpu=1",
                "--ui",
                f"127.0.0.1:{port}",
                "--state-dir",
                str(tmp_path / "s"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"--ui cannot listen on 127.0.0.1:{port}" in done.stderr
    assert not (tmp_path / "s" / "controller.json").exists()
    assert not (tmp_path / "s" / "ui.url").exists()


def test_a_bad_ui_address_is_refused_naming_the_flag(tmp_path: Path) -> None:
    done = subprocess.run(
        [*START, "--ui", "127.0.0.1:http", "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "--ui" in done.stderr
