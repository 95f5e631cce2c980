"""Store packages without a Store: names, deterministic archives, hostile archives,
signatures and the trust policy, encryption for recipients, the signed index."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aif.errors import (
    IntegrityError,
    PackageSignatureError,
    SecurityError,
    StoreError,
    UnsafeArchive,
    UntrustedKey,
)
from aif.security.keys import Identity, format_public_key
from aif.store.archive import Limits, build_tar, extract_tar, extract_zip, staged
from aif.store.index import Index, IndexEntry, sign_index, verify_index
from aif.store.names import highest, parse_ref
from aif.store.package import (
    Manifest,
    build_package,
    decrypt_package,
    encrypt_package,
    sign_package,
    verify_package,
)
from aif.store.signing import Verified

MANIFEST = Manifest(
    kind="AIM", name="tiny", version="1.0.0", entry="tiny_mod:Tiny", implementation="src"
)
FILE = "tiny-1.0.0.tar.gz"


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def bob() -> Identity:
    return Identity.generate()


def tar_of(*members: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    """A tar.gz built member by member, hostile ones included."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def zip_of(*members: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with (
        warnings.catch_warnings(),  # zipfile warns on the duplicate name we write on purpose
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        warnings.simplefilter("ignore", UserWarning)
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


# -- names -----------------------------------------------------------------------------


def test_refs_parse_and_refuse_bad_names() -> None:
    assert parse_ref("tiny-counter") == ("tiny-counter", None)
    assert parse_ref("tiny-counter@1.2.0rc1") == ("tiny-counter", "1.2.0rc1")
    for bad in ("Tiny", "../x", "a/b", "", "x@", "x@../1", "-x", "x@1 2"):
        with pytest.raises(StoreError):
            parse_ref(bad)


def test_highest_version_follows_pep440() -> None:
    assert highest(["1.9.0", "1.10.0", "1.10.0rc1", "0.1"]) == "1.10.0"
    assert highest([]) is None


# -- deterministic build ---------------------------------------------------------------


def test_the_same_input_builds_the_same_bytes(tmp_path: Path) -> None:
    src = tmp_path / "tiny_mod.py"
    src.write_text("X = 1\n")
    first = build_package(MANIFEST, {"src/tiny_mod.py": src})
    src.touch()  # a new mtime changes nothing
    assert build_package(MANIFEST, {"src/tiny_mod.py": src}) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["aif-package.json", "src/tiny_mod.py"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_build_round_trips_through_safe_extract(tmp_path: Path) -> None:
    data = build_tar({"src/a/b.py": b"print(1)\n", "src/c.txt": b"c"})
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_tar(data, dest, where="t") == 10
    assert (dest / "src/a/b.py").read_bytes() == b"print(1)\n"


# -- hostile tar archives --------------------------------------------------------------

HOSTILE_TARS = {
    "dotdot": (tar_of(("../x", b"evil")), "'../x'"),
    "nested-dotdot": (tar_of(("src/../../x", b"evil")), "'src/../../x'"),
    "absolute": (tar_of(("/tmp/evil", b"evil")), "'/tmp/evil'"),
    "backslash": (tar_of(("src\\..\\x", b"evil")), "src"),
    "symlink": (tar_of(special("src/link", tarfile.SYMTYPE, "/etc/passwd")), "symbolic link"),
    "hardlink": (
        tar_of(("src/a", b"a"), special("src/b", tarfile.LNKTYPE, "src/a")),
        "hard link",
    ),
    "fifo": (tar_of(special("src/fifo", tarfile.FIFOTYPE)), "device or FIFO"),
    "device": (tar_of(special("src/dev", tarfile.CHRTYPE)), "device or FIFO"),
    "duplicate": (tar_of(("src/a", b"1"), ("src/a", b"2")), "appears twice"),
    "file-then-dir": (tar_of(("src", b"1"), ("src/a", b"2")), "cannot place"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    data, said = HOSTILE_TARS[case]
    target = tmp_path / "box" / "target"
    with pytest.raises(UnsafeArchive, match=r"refus|cannot place") as caught, staged(target) as tmp:
        extract_tar(data, tmp, where="pkg.tar.gz")
    assert said in str(caught.value)
    assert "pkg.tar.gz" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # no target, no temp dir, no parent made for them


@pytest.mark.parametrize(
    ("limits", "members", "said"),
    [
        (Limits(max_members=3), [(f"m{i}", b"") for i in range(4)], "more than 3 members"),
        (Limits(max_file=10), [("big", b"x" * 11)], "member 'big' is 11 bytes"),
        (Limits(max_total=15), [("a", b"x" * 10), ("b", b"x" * 10)], "unpacked content"),
        (Limits(max_download=100), [("a", bytes(range(256)) * 4)], "the archive is"),
    ],
)
def test_tar_over_a_limit_is_refused(
    tmp_path: Path, limits: Limits, members: list[tuple[str, bytes]], said: str
) -> None:
    with pytest.raises(UnsafeArchive, match=said):
        extract_tar(tar_of(*members), tmp_path, limits, where="t")


def test_a_gzip_bomb_of_headers_is_cut_off(tmp_path: Path) -> None:
    info = tarfile.TarInfo("a")
    info.pax_headers = {"comment": "x" * 2_000_000}  # 2 MB of header, 2 kB compressed
    data = tar_of(info)
    assert len(data) < 20_000
    with pytest.raises(UnsafeArchive, match="decompressed tar stream"):
        extract_tar(data, tmp_path, Limits(max_total=64 * 1024, max_members=1), where="t")


def test_a_corrupt_archive_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"not a readable tar\.gz"):
        extract_tar(b"\x1f\x8b" + b"garbage" * 10, tmp_path, where="t")


# -- hostile wheels --------------------------------------------------------------------


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (0o120777 << 16) | 0
    return info


HOSTILE_ZIPS = {
    "dotdot": (zip_of(("../evil.py", b"x")), "'../evil.py'"),
    "absolute": (zip_of(("/tmp/evil.py", b"x")), "'/tmp/evil.py'"),
    "symlink": (zip_of((_symlink_info("pkg/link"), b"/etc/passwd")), "symbolic link"),
    "duplicate": (zip_of(("pkg/a.py", b"1"), ("pkg/a.py", b"2")), "appears twice"),
    "bomb": (zip_of(("pkg/zeros", b"\0" * (4 << 20))), "zip bomb"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIPS))
def test_hostile_wheel_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    data, said = HOSTILE_ZIPS[case]
    target = tmp_path / "box" / "site"
    with pytest.raises(UnsafeArchive, match=said), staged(target) as tmp:
        extract_zip(data, tmp, where="w.whl")
    assert list(tmp_path.iterdir()) == []


def test_a_wheel_unpacks(tmp_path: Path) -> None:
    data = zip_of(("pkg/__init__.py", b"X = 1\n"), ("pkg-1.0.dist-info/METADATA", b"Name: pkg"))
    assert extract_zip(data, tmp_path, where="w.whl") == 15
    assert (tmp_path / "pkg/__init__.py").read_text() == "X = 1\n"


# -- signatures and policy -------------------------------------------------------------


def test_signed_package_verifies_and_names_its_trusted_signer(alice: Identity) -> None:
    data = build_tar({"aif-package.json": b"{}"})
    sig = sign_package(data, alice.signing, "tiny", "1.0.0", FILE, encrypted=False)
    trusted = {"alice": alice.signing.public_key()}
    done = verify_package(
        data, sig, name="tiny", version="1.0.0", file=FILE, trusted=trusted,
        require_trusted=True, where=FILE,
    )  # fmt: skip
    assert (done.signer_name, done.trusted, done.warnings) == ("alice", True, [])
    assert done.signer == format_public_key(alice.signing.public_key())


def _verify(
    data: bytes, sig: bytes | None, trusted: Mapping[str, Ed25519PublicKey], secure: bool
) -> Verified:
    return verify_package(
        data, sig, name="tiny", version="1.0.0", file=FILE, trusted=trusted,
        require_trusted=secure, where=FILE,
    )  # fmt: skip


@pytest.mark.parametrize("secure", [True, False])
def test_tampering_is_refused_under_both_profiles(alice: Identity, secure: bool) -> None:
    data = build_tar({"aif-package.json": b"{}"})
    sig = sign_package(data, alice.signing, "tiny", "1.0.0", FILE, encrypted=False)
    trusted = {"alice": alice.signing.public_key()}
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 1
    with pytest.raises(PackageSignatureError, match="altered or truncated"):
        _verify(bytes(flipped), sig, trusted, secure)
    doc = json.loads(sig)
    text = doc["signature"]
    doc["signature"] = text[:10] + ("A" if text[10] != "A" else "B") + text[11:]
    with pytest.raises(PackageSignatureError, match="does not verify"):
        _verify(data, json.dumps(doc).encode(), trusted, secure)
    other = sign_package(data, alice.signing, "tiny", "2.0.0", FILE, encrypted=False)
    with pytest.raises(PackageSignatureError, match="swapped"):
        _verify(data, other, trusted, secure)
    with pytest.raises(PackageSignatureError, match="not a valid signature file"):
        _verify(data, sig[:20], trusted, secure)


def test_untrusted_or_unsigned_refused_when_secure_warned_when_basic(
    alice: Identity, bob: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    data = build_tar({"aif-package.json": b"{}"})
    sig = sign_package(data, bob.signing, "tiny", "1.0.0", FILE, encrypted=False)
    trusted = {"alice": alice.signing.public_key()}
    bob_key = format_public_key(bob.signing.public_key())
    with pytest.raises(UntrustedKey) as caught:
        _verify(data, sig, trusted, True)
    assert bob_key in str(caught.value) and f"aif keys trust NAME {bob_key}" in str(caught.value)
    with pytest.raises(PackageSignatureError, match="not signed"):
        _verify(data, None, trusted, True)
    with caplog.at_level(logging.WARNING, logger="aif.store"):
        untrusted = _verify(data, sig, trusted, False)
        unsigned = _verify(data, None, trusted, False)
    assert "untrusted key" in untrusted.warnings[0]
    assert "not signed" in unsigned.warnings[0]
    assert len([r for r in caplog.records if r.name == "aif.store"]) == 2


# -- encryption ------------------------------------------------------------------------


def test_encrypted_package_opens_only_for_its_recipients(alice: Identity, bob: Identity) -> None:
    archive = build_tar({"aif-package.json": b"{}"})
    stored = encrypt_package(archive, "tiny", "1.0.0", {"bob": bob.exchange.public_key()})
    assert archive not in stored
    assert decrypt_package(stored, bob.exchange, "tiny", "1.0.0", "f") == archive
    bob_text = format_public_key(bob.exchange.public_key())
    alice_text = format_public_key(alice.exchange.public_key())
    with pytest.raises(SecurityError) as caught:
        decrypt_package(stored, alice.exchange, "tiny", "1.0.0", "f")
    assert bob_text in str(caught.value) and f"--to {alice_text}" in str(caught.value)
    with pytest.raises(SecurityError, match="no decryption key"):
        decrypt_package(stored, None, "tiny", "1.0.0", "f")
    with pytest.raises(StoreError, match=r"not tiny@2\.0\.0"):
        decrypt_package(stored, bob.exchange, "tiny", "2.0.0", "f")
    damaged = bytearray(stored)
    damaged[-5] ^= 1
    with pytest.raises(IntegrityError):
        decrypt_package(bytes(damaged), bob.exchange, "tiny", "1.0.0", "f")


# -- index -----------------------------------------------------------------------------


def _index(signer: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    entry = IndexEntry(
        name="tiny", version="1.0.0", kind="AIM", file=FILE, sha256="0" * 64, size=1,
        published="2025-01-01T00:00:00+00:00",
    )  # fmt: skip
    raw = Index(packages=[]).with_entry(entry).to_bytes()
    return raw, sign_index(raw, signer)


def test_index_signature_and_policy(alice: Identity, bob: Identity) -> None:
    trusted = {"alice": alice.signing.public_key()}
    raw, sig = _index(alice.signing)
    index, verified = verify_index(raw, sig, trusted=trusted, require_trusted=True, where="i")
    assert index.find("tiny").version == "1.0.0" and verified.trusted
    tampered = raw.replace(b'"size": 1', b'"size": 2')
    for secure in (True, False):
        with pytest.raises(PackageSignatureError, match="altered"):
            verify_index(tampered, sig, trusted=trusted, require_trusted=secure, where="i")
    raw_b, sig_b = _index(bob.signing)
    with pytest.raises(UntrustedKey):
        verify_index(raw_b, sig_b, trusted=trusted, require_trusted=True, where="i")
    _, basic = verify_index(raw_b, sig_b, trusted=trusted, require_trusted=False, where="i")
    assert basic.warnings and not basic.trusted
    package_sig = sign_package(raw, alice.signing, "index", "1", "index.json", encrypted=False)
    with pytest.raises(PackageSignatureError, match="does not verify"):  # other domain
        verify_index(raw, package_sig, trusted=trusted, require_trusted=False, where="i")


def test_index_refuses_entries_pointing_elsewhere() -> None:
    from aif.store.index import parse_index

    doc = json.loads(_index(Ed25519PrivateKey.generate())[0])
    doc["packages"][0]["file"] = "../../../etc/passwd"
    with pytest.raises(StoreError, match="not its own name"):
        parse_index(json.dumps(doc).encode(), "i")


def test_the_store_api_is_pinned() -> None:
    import aif.store

    assert set(aif.store.__all__) == {
        "DEFAULT_LIMITS", "Index", "IndexEntry", "InstallResult", "InstalledPackage", "Limits",
        "Manifest", "Published", "StoreClient", "StoreServer", "StoreTypes", "Verified",
        "check_installed",
        "find_installed", "format_ref", "install", "list_installed", "load_aim_class",
        "parse_ref", "publish", "publish_archive", "publish_source", "resolve_installed",
        "store_url", "verify_package",
    }  # fmt: skip
    assert all(hasattr(aif.store, name) for name in aif.store.__all__)
