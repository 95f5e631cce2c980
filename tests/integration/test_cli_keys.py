"""``aif keys`` as a user runs it: a real process, a real state directory, exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import zmq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aif.daemon.daemon import StateLock
from aif.security.exchange import StorageKeys
from aif.security.keys import PASSPHRASE_ENV, KeyRing, curve_text, format_public_key
from aif.storage.secure import secure_aim_storage, secure_global_storage

pytestmark = pytest.mark.integration


def keys(
    state: Path, *args: str, passphrase: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    if passphrase is not None:
        env[PASSPHRASE_ENV] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "aif", "keys", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_init_show_and_refusing_to_overwrite(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = keys(state, "init")
    assert done.returncode == 0, done.stderr
    assert "not passphrase-protected" in done.stdout
    assert stat.S_IMODE((state / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "keys" / "identity.json").stat().st_mode) == 0o600

    again = keys(state, "init")
    assert again.returncode == 2 and "--force" in again.stderr

    shown = keys(state, "show")
    texts = KeyRing(state).public().texts()
    lines = shown.stdout.splitlines()
    assert [line for line in lines if not line.startswith("#")] == list(texts.values())
    assert "# signing:" in shown.stdout and "# channels:" in shown.stdout
    as_json = json.loads(keys(state, "show", "--json").stdout)
    assert {k: as_json[k] for k in texts} == texts and as_json["protected"] is False


def test_passphrase_from_the_environment_and_a_wrong_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    no_terminal = keys(state, "init", "--passphrase")
    assert no_terminal.returncode == 2 and f"${PASSPHRASE_ENV}" in no_terminal.stderr
    assert not (state / "keys" / "identity.json").exists()

    assert keys(state, "init", "--passphrase", passphrase="s3cret").returncode == 0
    assert KeyRing(state).protected()
    assert json.loads(keys(state, "show", "--json").stdout)["protected"] is True

    wrong = keys(state, "rotate", passphrase="not it")
    assert wrong.returncode == 2
    assert f"wrong passphrase for {state / 'keys' / 'identity.json'}" in wrong.stderr
    assert not (state / "keys" / "storage.json").exists()  # nothing changed


def test_trust_list_untrust(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = format_public_key(Ed25519PrivateKey.generate().public_key())
    done = keys(state, "trust", "alice@lab", key)
    assert done.returncode == 0, done.stderr
    assert "alice@lab" in done.stdout and "signing key" in done.stdout
    listed = json.loads(keys(state, "list", "--json").stdout)
    assert listed == [{"name": "alice@lab", "kind": "ed25519", "key": key, "endpoint": None}]

    trusted_file = state / "keys" / "trusted.json"
    before = trusted_file.read_bytes()
    bad = keys(state, "trust", "bob", "ed25519:not-a-key")
    assert bad.returncode == 2
    assert "accepted forms: ed25519:" in bad.stderr and "curve:<40 Z85" in bad.stderr
    assert trusted_file.read_bytes() == before

    assert keys(state, "untrust", "alice@lab").returncode == 0
    gone = keys(state, "untrust", "alice@lab")
    assert gone.returncode == 1 and "no key is trusted as 'alice@lab'" in gone.stderr
    assert "no trusted keys" in keys(state, "list").stdout


def test_rotate_re_encrypts_every_scope_and_refuses_while_a_daemon_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    KeyRing(state).init()
    storage_keys = StorageKeys(state, KeyRing(state).identity())
    train = secure_aim_storage(state, "train", storage_keys.keys_for("aim/train"))
    train.put("ckpt/epoch-1.pt", b"weights")
    train.put("log", b"lines")
    secure_global_storage(state, storage_keys.keys_for("global")).put("shared", b"data")

    lock = StateLock(state)
    lock.acquire()  # what a running controller daemon holds
    try:
        refused = keys(state, "rotate")
    finally:
        lock.release()
    assert refused.returncode == 2
    assert f"another controller daemon (pid {os.getpid()})" in refused.stderr
    assert storage_keys.rotating("aim/train") is None  # nothing started

    done = keys(state, "rotate")
    assert done.returncode == 0, done.stderr
    assert "aim/train: 2 re-encrypted, 0 already at generation 2" in done.stdout
    assert "re-encrypted ckpt/epoch-1.pt" in done.stdout
    assert "rotated 2 scope(s), 3 object(s) re-encrypted" in done.stdout
    assert list(storage_keys.keys_for("aim/train")) == [2]
    after = secure_aim_storage(state, "train", storage_keys.keys_for("aim/train"))
    assert after.get("ckpt/epoch-1.pt") == b"weights" and after.info("log").generation == 2
    shared = secure_global_storage(state, storage_keys.keys_for("global"))
    assert shared.get("shared") == b"data"


def test_trust_a_server_key_at_an_endpoint(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = curve_text(zmq.curve_keypair()[0])
    done = keys(state, "trust", "gpu-box", server, "--endpoint", "tcp://GPU-Box.lab:5570/")
    assert done.returncode == 0, done.stderr
    assert "channels key, the server at tcp://gpu-box.lab:5570" in done.stdout
    assert KeyRing(state).server_key_for("tcp://gpu-box.lab:5570") == server[6:].encode()
    listed = json.loads(keys(state, "list", "--json").stdout)
    assert listed == [
        {"name": "gpu-box", "kind": "curve", "key": server, "endpoint": "tcp://gpu-box.lab:5570"}
    ]
    assert "server at tcp://gpu-box.lab:5570" in keys(state, "list").stdout

    signing = format_public_key(Ed25519PrivateKey.generate().public_key())
    refused = keys(state, "trust", "alice", signing, "--endpoint", "tcp://alice:1")
    assert refused.returncode == 2 and "only goes with a curve: key" in refused.stderr
    bad = keys(state, "trust", "other", server, "--endpoint", "tcp://*:5570")
    assert bad.returncode == 2 and "use tcp://HOST:PORT" in bad.stderr
    assert len(KeyRing(state).trusted()) == 1


#: A controller in another process: holds the storage-use lock until its stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from aif.security.exchange import StorageInUse

    use = StorageInUse(Path(sys.argv[1]))
    use.acquire()
    print("held", flush=True)
    sys.stdin.read()
    """
)


def test_rotate_refuses_while_another_process_uses_storage_keys(tmp_path: Path) -> None:
    state = tmp_path / "state"
    KeyRing(state).init()
    storage_keys = StorageKeys(state, KeyRing(state).identity())
    train = secure_aim_storage(state, "train", storage_keys.keys_for("aim/train"))
    train.put("ckpt", b"weights")
    files = [state / "keys" / "storage.json", state / "secure" / "aims" / "train" / "ckpt"]
    before = [path.read_bytes() for path in files]

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        refused = keys(state, "rotate")
    finally:
        holder.communicate(timeout=30)  # closes its stdin: it exits, dropping the lock
    assert refused.returncode == 2
    assert (
        f"a controller (aif run or a daemon) is using secure storage in {state}; "
        "wait for it to end, then rotate"
    ) in refused.stderr
    assert [path.read_bytes() for path in files] == before  # nothing changed
    assert storage_keys.rotating("aim/train") is None

    done = keys(state, "rotate")
    assert done.returncode == 0, done.stderr
    assert list(storage_keys.keys_for("aim/train")) == [2]


def test_init_force_refuses_over_secure_storage(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert keys(state, "init").returncode == 0
    assert keys(state, "init", "--force").returncode == 0  # no storage yet: allowed
    identity = state / "keys" / "identity.json"
    before = identity.read_bytes()
    storage_keys = StorageKeys(state, KeyRing(state).identity())
    secure_global_storage(state, storage_keys.keys_for("global")).put("shared", b"data")

    refused = keys(state, "init", "--force", "--passphrase", passphrase="pw")
    assert refused.returncode == 2
    assert f"refusing to replace the identity at {identity}" in refused.stderr
    assert "1 encrypted file(s)" in refused.stderr and "global: 1" in refused.stderr
    assert "`aif keys rotate` is the way to change storage keys" in refused.stderr
    assert identity.read_bytes() == before
    storage = secure_global_storage(state, storage_keys.keys_for("global"))
    assert storage.get("shared") == b"data"
