"""Secure-profile runs: encrypted AIM and Global Storage, per-AIM keys, attestation."""

from __future__ import annotations

from pathlib import Path

import pytest

from aif import Controller
from aif.controller.secure_profile import GLOBAL_SCOPE, aim_scope
from aif.errors import (
    AttestationError,
    ConfigError,
    IntegrityError,
    KeyFileError,
    StorageError,
)
from aif.security.attestation import new_nonce, verify_report
from aif.security.exchange import StorageKeys, StorageRotationLock
from aif.security.keys import KeyRing
from aif.storage.secure import secure_aim_storage, secure_global_storage
from aif.workflow import load_workflow_text, resolve

pytestmark = pytest.mark.integration

STORAGE = (
    "name: s\nprofile: secure\naims:\n"
    "  a: {type: 'tests.helpers.aims:StorageUser', placement: process}\n"
    "  b: {type: 'tests.helpers.aims:StorageUser'}\n"
    "inputs:\n  a.in: [one, two]\n  b.in: [three]\n"
)


async def test_a_secure_run_without_an_identity_is_refused_before_any_aim_starts(
    tmp_path: Path,
) -> None:
    async with Controller(tmp_path) as controller:
        with pytest.raises(KeyFileError, match="aif keys init"):
            await controller.launch(resolve(load_workflow_text(STORAGE)))
        assert controller.runs == {}


async def test_secure_storage_is_encrypted_and_each_aim_reads_only_its_own(
    tmp_path: Path,
) -> None:
    KeyRing(tmp_path).init()
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(resolve(load_workflow_text(STORAGE)), timeout=60)
    assert result.ok, result.error
    assert result.results["a"]["own"] == ["notes/one", "notes/two"]
    assert result.results["b"]["own"] == ["notes/three"]
    assert "shared/b-three" in result.results["b"]["shared"]
    # each AIM knows it runs in a secure run (the analog validator trusts only Store code)
    assert result.results["a"]["secure"] is result.results["b"]["secure"] is True

    # Nothing went to the basic profile's plain storage; the objects on disk are ciphertext.
    assert not (tmp_path / "aims").exists() and not (tmp_path / "global").exists()
    on_disk = (tmp_path / "secure" / "aims" / "a" / "notes" / "one").read_bytes()
    assert b"one" not in on_disk

    keys = StorageKeys(tmp_path, KeyRing(tmp_path).identity())
    own = secure_aim_storage(tmp_path, "a", keys.keys_for(aim_scope("a")))
    assert own.get("notes/two") == b"two"
    assert secure_global_storage(tmp_path, keys.keys_for(GLOBAL_SCOPE)).get("shared/b-three") == (
        b"x"
    )
    # b's keys open nothing of a's, even pointed at a's folder.
    b_keys = keys.keys_for(aim_scope("b"))
    with pytest.raises(IntegrityError):
        secure_aim_storage(tmp_path, "a", b_keys).get("notes/one")


async def test_a_secure_workflow_with_remote_aims_needs_an_encrypted_aim_api(
    tmp_path: Path,
) -> None:
    KeyRing(tmp_path).init()
    wf = resolve(
        load_workflow_text(
            "name: r\nprofile: secure\naims:\n  far: {type: source, placement: remote}\n"
        )
    )
    async with Controller(tmp_path, tcp="tcp://127.0.0.1:*") as controller:
        controller.curve_api = False
        with pytest.raises(ConfigError, match="not CURVE-encrypted"):
            await controller.launch(wf)


async def test_attestation_lists_the_loaded_aims_and_verifies(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    public = ring.init()
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(resolve(load_workflow_text(STORAGE)), timeout=60)
        assert result.ok, result.error
        nonce = new_nonce()
        envelope = controller.secure.attest(nonce, "secure")
    report = verify_report(envelope, public.signing, nonce=nonce)
    entries = {a["type"]: a for a in report["aims"]}
    user = entries["tests.helpers.aims:StorageUser"]
    assert user["class"] == "tests.helpers.aims:StorageUser"
    assert user["digest"].startswith("sha256:") and user["source"] == "path"
    assert report["profile"] == "secure"

    pinned = {a["class"]: a["digest"] for a in report["aims"]}
    verify_report(envelope, public.signing, nonce=nonce, expected=pinned)

    with pytest.raises(AttestationError, match="nonce"):
        verify_report(envelope, public.signing, nonce=new_nonce())
    with pytest.raises(AttestationError, match="expected sha256:00"):
        verify_report(envelope, public.signing, expected=dict.fromkeys(pinned, "sha256:00"))
    tampered = {**envelope, "report": {**envelope["report"], "profile": "basic"}}
    with pytest.raises(AttestationError, match="does not verify"):
        verify_report(tampered, public.signing)
    other = KeyRing(tmp_path / "other").init()
    with pytest.raises(AttestationError, match="does not verify"):
        verify_report(envelope, other.signing)


async def test_keys_cannot_rotate_under_a_controller_that_hands_out_storage_keys(
    tmp_path: Path,
) -> None:
    KeyRing(tmp_path).init()
    async with Controller(tmp_path) as controller:
        result = await controller.run_workflow(resolve(load_workflow_text(STORAGE)), timeout=60)
        assert result.ok, result.error
        with pytest.raises(StorageError, match="is using secure storage"):
            StorageRotationLock(tmp_path).acquire()
    rotation = StorageRotationLock(tmp_path)
    rotation.acquire()  # the controller is gone: its lock went with it
    rotation.release()
