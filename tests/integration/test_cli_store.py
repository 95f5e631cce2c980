"""``aif store publish|list|install|serve`` with real key rings, files and a real server.

The commands run in-process through ``aif.cli.store.add_commands`` (what ``aif.cli.main``
wires in), except ``serve``, which runs as its own process and is stopped with SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from aif.cli import store as cli_store
from aif.errors import AIFError
from aif.security.keys import KeyRing

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_imports")]

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tiny_cli_pkg"
ENTRY = f"{MODULE}:TinyCli"
AIM_SOURCE = '''"""A tiny AIM published by the CLI tests."""

from aif import AIM


class TinyCli(AIM):
    """Emits one record on ``out``."""

    outputs = {"out": "int64"}
    version = "0.3.0"

    async def run(self) -> None:
        await self.send("out", 1)
'''
SERVE = (
    "import argparse, sys\n"
    "from aif.cli import store as cli_store\n"
    "p = argparse.ArgumentParser(); cli_store.add_commands(p.add_subparsers())\n"
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
)


def aif_store(*argv: str) -> int:
    """Run one ``aif store`` command as ``aif`` would: AIFError -> message, exit 2."""
    parser = argparse.ArgumentParser(prog="aif")
    cli_store.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["store", *argv])
    try:
        code: int = args.func(args)
    except AIFError as exc:
        print(f"aif: error: {exc}", file=sys.stderr)
        return 2
    return code


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A publisher and a consumer state dir, a source tree, an empty Store directory."""
    src = tmp_path / "src"
    (src / MODULE).mkdir(parents=True)
    (src / MODULE / "__init__.py").write_text(AIM_SOURCE)
    publisher, consumer = tmp_path / "publisher", tmp_path / "consumer"
    KeyRing(publisher).init()
    KeyRing(consumer).init()
    return {"src": src, "store": tmp_path / "store", "pub": publisher, "use": consumer}


def test_publish_list_install(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    w = world
    store = str(w["store"])
    assert aif_store("publish", str(w["src"]), "--store", store, "--aim", ENTRY,
                     "--state-dir", str(w["pub"])) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "published tiny-cli@0.3.0 (AIM)" in out
    signer = KeyRing(w["pub"]).public().texts()["ed25519"]
    assert signer in out

    # the consumer does not trust the publisher yet: secure refuses, naming the fix
    assert aif_store("install", "tiny-cli", "--store", store, "--profile", "secure",
                     "--state-dir", str(w["use"])) == 2  # fmt: skip
    assert f"aif keys trust NAME {signer}" in capsys.readouterr().err

    KeyRing(w["use"]).trust("acme", signer)
    assert aif_store("list", "--store", store, "--json", "--profile", "secure",
                     "--state-dir", str(w["use"])) == 0  # fmt: skip
    listed = json.loads(capsys.readouterr().out)
    assert listed["index_trusted"] is True
    assert [(p["name"], p["signer_name"]) for p in listed["packages"]] == [("tiny-cli", "acme")]

    assert aif_store("install", "tiny-cli@0.3.0", "--store", store, "--profile", "secure",
                     "--state-dir", str(w["use"])) == 0  # fmt: skip
    done = capsys.readouterr()
    assert "installed tiny-cli@0.3.0" in done.out and "acme" in done.out and done.err == ""
    assert (w["use"] / "packages" / "tiny-cli" / "0.3.0" / "installed.json").is_file()


def test_basic_profile_warns_once_per_problem(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    w = world
    store = str(w["store"])
    aif_store("publish", str(w["src"]), "--store", store, "--aim", ENTRY, "--state-dir",
              str(w["pub"]))  # fmt: skip
    capsys.readouterr()
    assert aif_store("install", "tiny-cli", "--store", store, "--state-dir", str(w["use"])) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 2 and "untrusted key" in err


def test_encrypted_publish_for_a_named_recipient(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    w = world
    store = str(w["store"])
    consumer_x = KeyRing(w["use"]).public().texts()["x25519"]
    KeyRing(w["pub"]).trust("lab", consumer_x)
    assert aif_store("publish", str(w["src"]), "--store", store, "--aim", ENTRY, "--to", "lab",
                     "--name", "secret-aim", "--state-dir", str(w["pub"])) == 0  # fmt: skip
    assert f"encrypted for: {consumer_x}" in capsys.readouterr().out
    stranger = w["store"].parent / "stranger"
    KeyRing(stranger).init()
    assert aif_store("install", "secret-aim", "--store", store, "--state-dir", str(stranger)) == 2
    assert consumer_x in capsys.readouterr().err
    assert aif_store("install", "secret-aim", "--store", store, "--state-dir", str(w["use"])) == 0
    assert "--to" not in capsys.readouterr().err


def test_publish_refuses_an_unknown_recipient(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    w = world
    assert aif_store("publish", str(w["src"]), "--store", str(w["store"]), "--aim", ENTRY,
                     "--to", "nobody", "--state-dir", str(w["pub"])) == 2  # fmt: skip
    assert "aif keys trust NAME x25519:KEY" in capsys.readouterr().err


def test_store_defaults_to_the_environment(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIF_STORE", raising=False)
    assert aif_store("list", "--state-dir", str(world["use"])) == 2
    assert "$AIF_STORE" in capsys.readouterr().err
    monkeypatch.setenv("AIF_STORE", str(world["store"]))
    aif_store("publish", str(world["src"]), "--aim", ENTRY, "--state-dir", str(world["pub"]))
    capsys.readouterr()
    assert aif_store("list", "--state-dir", str(world["use"])) == 0
    assert "tiny-cli" in capsys.readouterr().out


def test_serve_prints_its_url_and_stops_on_ctrl_c(world: dict[str, Path]) -> None:
    world["store"].mkdir()
    (world["store"] / "index.json").write_text("{}")
    with subprocess.Popen(
        [sys.executable, "-c", SERVE, "store", "serve", str(world["store"]), "--bind",
         "127.0.0.1:0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            url = line.split(" on ")[1].split()[0]
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(url + "index.json", timeout=5) as response:
                assert response.read() == b"{}"
            child.send_signal(signal.SIGINT)
            assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate()
