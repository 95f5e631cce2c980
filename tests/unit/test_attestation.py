"""Attestation reports: what ``verify_report`` and ``aif attest --verify`` refuse, and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aif.cli.main import main
from aif.errors import AttestationError
from aif.security.attestation import LoadedAIM, build_report, new_nonce, verify_report
from aif.security.keys import KeyRing

AIM = LoadedAIM(type="relay", cls="aif.aims.builtin:Relay", source="aif", digest="sha256:ab")


@pytest.fixture
def signed(tmp_path: Path) -> tuple[KeyRing, dict[str, object], str]:
    ring = KeyRing(tmp_path / "state")
    ring.init()
    nonce = new_nonce()
    envelope = build_report(ring.identity(), version="9", profile="secure", aims=[AIM], nonce=nonce)
    return ring, envelope, nonce


@pytest.mark.parametrize(
    "envelope", [None, [], {"report": "x"}, {"signature": "s"}], ids=["none", "list", "str", "no"]
)
def test_what_is_not_a_report_is_refused_saying_what_one_looks_like(
    signed: tuple[KeyRing, dict[str, object], str], envelope: object
) -> None:
    ring = signed[0]
    with pytest.raises(AttestationError, match=r'expected \{"report"'):
        verify_report(envelope, ring.public().signing)


def test_another_format_and_a_missing_signature_are_refused(
    signed: tuple[KeyRing, dict[str, object], str],
) -> None:
    ring, envelope, _ = signed
    report = dict(envelope["report"])  # type: ignore[call-overload]
    with pytest.raises(AttestationError, match="format is 'v0'"):
        verify_report({"report": {**report, "format": "v0"}}, ring.public().signing)
    with pytest.raises(AttestationError, match="does not verify"):
        verify_report({"report": report}, ring.public().signing)
    with pytest.raises(AttestationError, match="does not verify"):
        verify_report({"report": report, "signature": "!!not base64"}, ring.public().signing)


def test_an_unexpected_aim_and_a_stale_report_are_each_named(
    signed: tuple[KeyRing, dict[str, object], str],
) -> None:
    ring, envelope, _ = signed
    with pytest.raises(AttestationError) as info:
        verify_report(envelope, ring.public().signing, expected={}, max_age=-1)
    text = str(info.value)
    assert "AIM relay (aif.aims.builtin:Relay) is loaded but not expected" in text
    assert "older than -1 s" in text


def test_the_cli_names_a_bad_expect_file_and_a_missing_key(
    signed: tuple[KeyRing, dict[str, object], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ring, envelope, _ = signed
    report = tmp_path / "report.json"
    report.write_text(json.dumps(envelope))
    key = ring.public().texts()["ed25519"]
    assert main(["attest", "--verify", str(report)]) == 2
    assert "--verify needs --key" in capsys.readouterr().err
    expect = tmp_path / "expect.json"
    expect.write_text("[1, 2]")
    assert main(["attest", "--verify", str(report), "--key", key, "--expect", str(expect)]) == 2
    assert "expected digests are a JSON object" in capsys.readouterr().err
    expect.write_text("{not json")
    assert main(["attest", "--verify", str(report), "--key", key, "--expect", str(expect)]) == 2
    assert "is not JSON" in capsys.readouterr().err
    unknown = ["attest", "--verify", str(report), "--key", "nobody", "--state-dir", str(tmp_path)]
    assert main(unknown) == 2
    assert "neither an ed25519:... key nor the name of a trusted" in capsys.readouterr().err
    assert main(["attest", "--verify", str(report), "--key", key]) == 0
    assert "digests not checked" in capsys.readouterr().out
