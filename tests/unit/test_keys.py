"""aif.security.keys on real files: key texts, identities, passphrases, permissions, init.

scrypt (n=2**15) costs about 0.1 s a call, so only the passphrase tests pay for it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import zmq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from aif.errors import ConfigError, KeyFileError
from aif.security.keys import (
    PASSPHRASE_ENV,
    KeyRing,
    curve_text,
    format_public_key,
    parse_public_key,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    ring = KeyRing(tmp_path / "state")
    ring.init()
    return ring


@pytest.fixture(autouse=True)
def no_passphrase_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """No $AIF_PASSPHRASE and no terminal, unless a test sets one."""
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


# -- key text --------------------------------------------------------------------------


def test_public_key_texts_round_trip() -> None:
    signing = Ed25519PrivateKey.generate().public_key()
    exchange = X25519PrivateKey.generate().public_key()
    curve_public, _ = zmq.curve_keypair()
    for key, kind in ((signing, "ed25519"), (exchange, "x25519")):
        text = format_public_key(key)
        assert text.startswith(f"{kind}:") and len(text) == len(kind) + 1 + 43
        parsed_kind, parsed = parse_public_key(text)
        assert parsed_kind == kind
        assert format_public_key(parsed) == text  # type: ignore[arg-type]
    assert parse_public_key(curve_text(curve_public)) == ("curve", curve_public)
    assert parse_public_key("  " + curve_text(curve_public) + "\n")[0] == "curve"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "rsa:AAAA",
        "ed25519:",
        "ed25519:" + "A" * 42,
        "ed25519:" + base64.urlsafe_b64encode(bytes(32)).decode(),  # with '=' padding
        "x25519:" + "A" * 42 + "B",  # a last character with bits a 32-byte key never sets
        "curve:" + "a" * 39,
        "curve:" + "#" * 40,  # Z85 characters, but not a value Z85 can encode
        "curve:" + "a" * 39 + "~",
    ],
)
def test_bad_key_text_is_refused_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_public_key(text)
    message = str(info.value)
    assert "ed25519:<43 base64url characters>" in message
    assert "x25519:<43 base64url characters>" in message
    assert "curve:<40 Z85 characters>" in message


# -- identity ----------------------------------------------------------------------------


def test_init_writes_owner_only_files_and_loads_back(ring: KeyRing) -> None:
    assert mode(ring.dir) == 0o700
    assert mode(ring.identity_path) == 0o600
    assert sorted(os.listdir(ring.dir)) == ["identity.json"]  # no temp files left
    identity = ring.identity()
    assert identity.public().texts() == ring.public().texts()
    assert not ring.protected()
    message = b"attested"
    identity.signing.public_key().verify(identity.signing.sign(message), message)
    assert zmq.curve_public(identity.curve_secret) == identity.curve_public
    shown = repr(identity)
    assert identity.curve_secret.decode() not in shown and "signing" not in shown


def test_init_refuses_to_overwrite_and_force_replaces(ring: KeyRing) -> None:
    before = ring.identity_path.read_bytes()
    with pytest.raises(KeyFileError, match=r"already exists .* --force"):
        ring.init()
    assert ring.identity_path.read_bytes() == before
    new = ring.init(force=True)
    assert new.texts() != json.loads(before)["public"]
    assert ring.public().texts() == new.texts()


def test_missing_identity_says_run_aif_keys_init(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "nowhere")
    assert not ring.exists()
    with pytest.raises(KeyFileError, match="run `aif keys init`"):
        ring.public()
    with pytest.raises(KeyFileError, match="run `aif keys init`"):
        ring.identity()
    assert not (tmp_path / "nowhere").exists()  # a refusal writes nothing


def test_a_group_readable_identity_is_refused(ring: KeyRing) -> None:
    os.chmod(ring.identity_path, 0o644)
    with pytest.raises(KeyFileError, match=f"chmod 600 {ring.identity_path}"):
        ring.identity()
    assert ring.public().texts()  # the public half needs no secrecy
    os.chmod(ring.identity_path, 0o600)
    os.chmod(ring.dir, 0o755)
    with pytest.raises(KeyFileError, match=f"chmod 700 {ring.dir}"):
        ring.identity()
    os.chmod(ring.dir, 0o700)
    ring.identity()


def test_a_public_key_edited_in_the_file_is_refused(ring: KeyRing) -> None:
    doc = json.loads(ring.identity_path.read_text())
    doc["public"]["ed25519"] = format_public_key(Ed25519PrivateKey.generate().public_key())
    ring.identity_path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="do not belong to its private keys"):
        ring.identity()


def test_a_corrupt_identity_file_is_refused(ring: KeyRing) -> None:
    ring.identity_path.write_text("{not json")
    with pytest.raises(KeyFileError, match="not valid JSON"):
        ring.public()


def test_passphrase_protects_the_private_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = KeyRing(tmp_path / "state")
    public = ring.init("correct horse")
    assert ring.protected()
    doc = json.loads(ring.identity_path.read_text())
    assert doc["protection"] == "scrypt"
    assert doc["kdf"]["n"] == 2**15 and doc["kdf"]["r"] == 8 and doc["kdf"]["p"] == 1
    assert ring.public().texts() == public.texts()  # no passphrase for the public half
    assert ring.identity("correct horse").public().texts() == public.texts()
    with pytest.raises(KeyFileError, match=f"wrong passphrase for {ring.identity_path}"):
        ring.identity("wrong horse")
    with pytest.raises(KeyFileError, match=f"no terminal to ask on; set \\${PASSPHRASE_ENV}"):
        ring.identity()
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    assert ring.identity().public().texts() == public.texts()


def test_a_swapped_public_section_does_not_open_with_the_passphrase(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "state")
    ring.init("pw")
    doc = json.loads(ring.identity_path.read_text())
    doc["public"]["x25519"] = format_public_key(X25519PrivateKey.generate().public_key())
    ring.identity_path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match=r"wrong passphrase .*\(or the file was altered\)"):
        ring.identity("pw")


def test_an_empty_passphrase_is_refused(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "state")
    with pytest.raises(KeyFileError, match="empty passphrase"):
        ring.init("")
    assert not ring.exists()


# -- replacing an identity that secure storage depends on --------------------------------


def test_init_force_is_refused_while_secure_storage_depends_on_the_identity(
    ring: KeyRing,
) -> None:
    state = ring.dir.parent
    (state / "secure" / "scratch" / "aims" / "train").mkdir(parents=True)
    (state / "secure" / "scratch" / "aims" / "train" / "tmp.pt").write_bytes(b"plaintext")
    (state / "secure" / "aims" / "train").mkdir(parents=True)
    ring.init(force=True)  # scratch files and empty folders: nothing becomes unreadable

    before = ring.identity_path.read_bytes()
    (state / "secure" / "aims" / "train" / "ckpt.pt").write_bytes(b"AIFS...")
    (state / "secure" / "global").mkdir()
    (state / "secure" / "global" / "shared").write_bytes(b"AIFS...")
    with pytest.raises(KeyFileError) as info:
        ring.init(force=True)
    message = str(info.value)
    assert f"refusing to replace the identity at {ring.identity_path}" in message
    assert "2 encrypted file(s)" in message and "aims/train: 1, global: 1" in message
    assert "`aif keys rotate` is the way to change storage keys" in message
    assert ring.identity_path.read_bytes() == before

    shutil.rmtree(state / "secure")
    (ring.dir / "storage.json").write_text("{}")
    with pytest.raises(KeyFileError, match=r"storage keys file .*storage\.json"):
        ring.init(force=True)
    assert ring.identity_path.read_bytes() == before
    with pytest.raises(KeyFileError, match="already exists"):
        ring.check_init()  # without force: the usual refusal first
