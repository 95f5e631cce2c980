"""``type: store:NAME@VERSION`` in workflows, through the real ``aif`` command.

A publisher signs a package into a Store directory; a user runs a workflow that names
it. The controller fetches, verifies, installs and loads it (in a child process too),
refuses it under the secure profile until the publisher is trusted, and lists its
digest in attestation reports.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aif import Controller
from aif.daemon.records import JobState
from aif.security.attestation import new_nonce, verify_report
from aif.security.keys import KeyRing
from aif.store.aim_types import StoreTypes
from aif.workflow import load_workflow, resolve
from tests.helpers.cli import aif as run_aif
from tests.helpers.daemon import DaemonProcess

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_imports")]

GAIN = '''"""Multiplies what it receives: an AIM from a Store."""

from aif import AIM, Record


class Gain(AIM):
    """Sends 10 x every integer it receives."""

    inputs = {"in": "int64"}
    outputs = {"out": "int64"}
    version = "1.0.0"

    async def run(self) -> None:
        async for event in self.events():
            if isinstance(event, Record):
                await self.send("out", event.value * 10)
'''

WORKFLOW = """\
name: gained
profile: {profile}
aims:
  gain: {{type: "store:gain@1.0.0", placement: process}}
  sink: {{type: collect}}
connections:
  - {{from: gain.out, to: sink.in}}
inputs:
  gain.in: [1, 2, 3]
"""


def aif(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_aif(*argv, cwd=cwd, timeout=120, env={"AIF_STORE": ""})


@pytest.fixture
def published(tmp_path: Path) -> dict[str, Path]:
    """A signed ``gain@1.0.0`` in a Store directory, and a user with keys of their own."""
    src = tmp_path / "src"
    (src / "acme_gain").mkdir(parents=True)
    (src / "acme_gain" / "__init__.py").write_text(GAIN)
    publisher, user = tmp_path / "publisher", tmp_path / "user"
    KeyRing(publisher).init()
    KeyRing(user).init()
    store = str(tmp_path / "store")
    done = aif("store", "publish", str(src), "--aim", "acme_gain:Gain", "--name", "gain",
               "--store", store, "--state-dir", str(publisher), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for profile in ("basic", "secure"):
        (tmp_path / f"{profile}.yml").write_text(WORKFLOW.format(profile=profile))
    return {"store": tmp_path / "store", "publisher": publisher, "user": user, "dir": tmp_path}


def test_secure_refuses_an_untrusted_publisher_then_runs_once_trusted(
    published: dict[str, Path],
) -> None:
    p = published
    common = ["--store", str(p["store"]), "--state-dir", str(p["user"])]
    refused = aif("validate", "secure.yml", *common, cwd=p["dir"])
    assert refused.returncode == 2
    signer = KeyRing(p["publisher"]).public().texts()["ed25519"]
    assert "aims.gain.type" in refused.stderr and f"aif keys trust NAME {signer}" in refused.stderr
    assert not (p["user"] / "packages").exists() or not any((p["user"] / "packages").iterdir())

    KeyRing(p["user"]).trust("acme", signer)
    ran = aif("run", "secure.yml", *common, "-q", "--json", "out.json", cwd=p["dir"])
    assert ran.returncode == 0, ran.stderr
    result = json.loads((p["dir"] / "out.json").read_text())
    assert result["state"] == "succeeded"
    assert (p["user"] / "packages" / "gain" / "1.0.0" / "installed.json").is_file()


def test_basic_runs_an_untrusted_package_with_a_warning(published: dict[str, Path]) -> None:
    p = published
    ran = aif("run", "basic.yml", "--store", str(p["store"]), "--state-dir", str(p["user"]),
              "-q", "--json", "out.json", cwd=p["dir"])  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "is signed by untrusted key" in ran.stderr
    assert json.loads((p["dir"] / "out.json").read_text())["state"] == "succeeded"


def test_without_a_store_an_uninstalled_package_names_both_fixes(
    published: dict[str, Path],
) -> None:
    p = published
    done = aif("validate", "basic.yml", "--state-dir", str(p["user"]), cwd=p["dir"])
    assert done.returncode == 2
    assert "aif store install gain@1.0.0" in done.stderr and "--store URL" in done.stderr


async def test_attestation_reports_the_package_digest(published: dict[str, Path]) -> None:
    p = published
    ring = KeyRing(p["user"])
    ring.trust("acme", KeyRing(p["publisher"]).public().texts()["ed25519"])
    types = StoreTypes(p["user"], str(p["store"]))
    wf = resolve(load_workflow(p["dir"] / "secure.yml"), store_types=types)
    async with Controller(p["user"]) as controller:
        result = await controller.run_workflow(wf, timeout=60)
        assert result.ok, result.error
        nonce = new_nonce()
        envelope = controller.secure.attest(nonce, "secure")
    report = verify_report(envelope, ring.public().signing, nonce=nonce)
    installed = json.loads(
        (p["user"] / "packages" / "gain" / "1.0.0" / "installed.json").read_text()
    )
    entry = next(a for a in report["aims"] if a["type"] == "store:gain@1.0.0")
    assert entry == {
        "type": "store:gain@1.0.0",
        "class": "acme_gain:Gain",
        "source": "store:gain@1.0.0",
        "digest": f"sha256:{installed['sha256']}",
    }


def test_the_daemon_fetches_store_aims_of_submitted_jobs(published: dict[str, Path]) -> None:
    p = published
    KeyRing(p["user"]).trust("acme", KeyRing(p["publisher"]).public().texts()["ed25519"])
    daemon = DaemonProcess(p["user"], "--store", str(p["store"])).start()
    try:
        with daemon.client() as client:
            job = client.submit(p["dir"] / "secure.yml")
            record = client.wait(job.id, timeout=60)
            assert record.state is JobState.SUCCEEDED, client.status(job.id)
    finally:
        assert daemon.stop() == 0, daemon.text()
    assert (p["user"] / "packages" / "gain" / "1.0.0" / "installed.json").is_file()
