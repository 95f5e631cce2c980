"""Publishing into a Store directory and installing from it: the whole path on real
files, every refusal leaving the install cache as it was."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from aif import AIM
from aif.errors import (
    IntegrityError,
    PackageNotFound,
    PackageSignatureError,
    SecurityError,
    StoreError,
    UnsafeArchive,
    UntrustedKey,
)
from aif.security.keys import Identity, format_public_key
from aif.store import (
    InstallResult,
    Limits,
    StoreClient,
    check_installed,
    find_installed,
    install,
    load_aim_class,
    publish_archive,
    publish_source,
    resolve_installed,
)
from aif.store.archive import build_tar
from aif.store.index import INDEX_FILE, INDEX_SIG
from aif.store.package import Manifest

AIM_SOURCE = '''"""A tiny AIM, published by the Store tests."""

from aif import AIM


class TinyCounter(AIM):
    """Emits 1, 2, 3 on ``out``."""

    outputs = {"out": "int64"}
    version = "1.2.0"

    async def run(self) -> None:
        for i in (1, 2, 3):
            await self.send("out", i)
'''
pytestmark = pytest.mark.usefixtures("clean_imports")

MODULE = "tiny_counter_pkg"
ENTRY = f"{MODULE}:TinyCounter"


@pytest.fixture(scope="module")
def alice() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="module")
def bob() -> Identity:
    return Identity.generate()


def aim_source(root: Path, text: str = AIM_SOURCE) -> Path:
    src = root / "src"
    (src / MODULE).mkdir(parents=True)
    (src / MODULE / "__init__.py").write_text(text)
    (src / MODULE / "__pycache__").mkdir()
    (src / MODULE / "__pycache__" / "junk.pyc").write_bytes(b"not packaged")
    return src


def manifest(**changes: str) -> Manifest:
    fields = {"kind": "AIM", "name": "tiny", "version": "1.0.0", "entry": ENTRY}
    return Manifest.model_validate({**fields, "implementation": "src", **changes})


def nothing_installed(state: Path) -> bool:
    """No package and no partial directory anywhere under the install cache."""
    root = state / "packages"
    return not root.exists() or not any(root.iterdir())


def flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 1
    path.write_bytes(bytes(data))


@pytest.fixture
def store(tmp_path: Path, alice: Identity) -> Path:
    """A Store directory holding tiny-counter@1.2.0, published by alice."""
    path = tmp_path / "store"
    publish_source(path, aim_source(tmp_path), alice.signing, aim=ENTRY)
    return path


def _install(
    store: Path,
    state: Path,
    who: Identity,
    secure: bool = True,
    decrypt_key: X25519PrivateKey | Callable[[], X25519PrivateKey] | None = None,
    ref: str = "tiny-counter",
) -> InstallResult:
    """Install ``ref`` trusting ``who``'s signing key."""
    return install(
        StoreClient(str(store)), ref, state,
        trusted={"alice": who.signing.public_key()}, require_trusted=secure,
        decrypt_key=decrypt_key,
    )  # fmt: skip


# -- the happy path --------------------------------------------------------------------


def test_publish_install_load(tmp_path: Path, store: Path, alice: Identity) -> None:
    state = tmp_path / "state"
    result = install(
        StoreClient(store.as_uri()),
        "tiny-counter",
        state,
        trusted={"alice": alice.signing.public_key()},
        require_trusted=True,
    )
    package = result.package
    assert (result.warnings, result.already) == ([], False)
    assert package.path == state / "packages" / "tiny-counter" / "1.2.0"
    record = json.loads((package.path / "installed.json").read_text())
    assert record["signer_name"] == "alice" and record["trusted"] is True
    assert record["signer"] == format_public_key(alice.signing.public_key())
    assert record["entry"] == ENTRY and record["kind"] == "AIM"
    assert not list(package.site.rglob("*.pyc"))  # caches are not published
    cls = load_aim_class(package)
    assert issubclass(cls, AIM) and cls.outputs == {"out": "int64"}
    assert Path(sys.modules[MODULE].__file__ or "").is_relative_to(package.site)
    assert find_installed(state, "tiny-counter").path == package.path
    assert (
        check_installed(
            package, trusted={"alice": alice.signing.public_key()}, require_trusted=True, deep=True
        )
        == []
    )
    loaded, found, warnings = resolve_installed(
        state, "tiny-counter@1.2.0", trusted={"alice": alice.signing.public_key()},
        require_trusted=True,
    )  # fmt: skip
    assert (loaded, found.sha256, warnings) == (cls, package.sha256, [])


def test_installing_again_is_a_no_op(tmp_path: Path, store: Path, alice: Identity) -> None:
    first = _install(store, tmp_path / "state", alice)
    again = _install(store, tmp_path / "state", alice)
    assert again.already and again.package.record == first.package.record


def test_the_same_source_publishes_the_same_digest(
    tmp_path: Path, store: Path, alice: Identity
) -> None:
    again = publish_source(store, tmp_path / "src", alice.signing, aim=ENTRY)
    assert again.already
    (tmp_path / "src" / MODULE / "__init__.py").write_text(AIM_SOURCE + "# changed\n")
    with pytest.raises(StoreError, match="versions are immutable"):
        publish_source(store, tmp_path / "src", alice.signing, aim=ENTRY)


def test_a_changed_store_copy_of_an_installed_version_is_refused(
    tmp_path: Path, store: Path, alice: Identity
) -> None:
    state = tmp_path / "state"
    _install(store, state, alice)
    other = tmp_path / "other"
    publish_source(other, aim_source(other, AIM_SOURCE + "# new\n"), alice.signing, aim=ENTRY)
    with pytest.raises(StoreError, match="versions are immutable"):
        _install(other, state, alice)


def test_missing_package_names_what_the_store_has(tmp_path: Path, store: Path) -> None:
    with pytest.raises(PackageNotFound, match="it has: tiny-counter"):
        install(StoreClient(str(store)), "nope", tmp_path, trusted={}, require_trusted=False)
    with pytest.raises(PackageNotFound, match=r"it has: 1\.2\.0"):
        install(
            StoreClient(str(store)), "tiny-counter@9", tmp_path, trusted={}, require_trusted=False
        )


def test_a_wheel_package_installs(tmp_path: Path, alice: Identity) -> None:
    wheel = tmp_path / "tiny_counter_pkg-1.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{MODULE}/__init__.py", AIM_SOURCE)
        archive.writestr(f"{MODULE}-1.2.0.dist-info/METADATA", "Name: tiny-counter-pkg\n")
    publish_source(tmp_path / "store", wheel, alice.signing, aim=ENTRY)
    package = _install(tmp_path / "store", tmp_path / "state", alice).package
    assert package.record.implementation == "wheel"
    assert issubclass(load_aim_class(package), AIM)


# -- encryption ------------------------------------------------------------------------


def test_encrypted_package_installs_for_its_recipient_only(
    tmp_path: Path, alice: Identity, bob: Identity
) -> None:
    store = tmp_path / "store"
    recipients = {"bob": bob.exchange.public_key()}
    done = publish_source(
        store, aim_source(tmp_path), alice.signing, aim=ENTRY, recipients=recipients
    )
    assert done.entry.encrypted and done.path.name.endswith(".tar.gz.aifenc")
    assert b"TinyCounter" not in done.path.read_bytes()
    state = tmp_path / "state"
    with pytest.raises(SecurityError) as caught:
        _install(store, state, alice, decrypt_key=alice.exchange)
    assert format_public_key(bob.exchange.public_key()) in str(caught.value)
    assert format_public_key(alice.exchange.public_key()) in str(caught.value)
    with pytest.raises(SecurityError, match="no decryption key"):
        _install(store, state, alice)
    assert nothing_installed(state)
    package = _install(store, state, alice, decrypt_key=lambda: bob.exchange).package
    assert package.record.encrypted and package.sha256 != package.record.stored_sha256
    assert issubclass(load_aim_class(package), AIM)


# -- refusals: signatures and trust ----------------------------------------------------


def test_tampered_archive_is_refused(tmp_path: Path, store: Path, alice: Identity) -> None:
    flip(next(store.glob("packages/*/*/*.tar.gz")))
    for secure in (True, False):
        with pytest.raises(PackageSignatureError, match="differs from the index"):
            _install(store, tmp_path / "state", alice, secure)
    assert nothing_installed(tmp_path / "state")


def test_tampered_signature_is_refused(tmp_path: Path, store: Path, alice: Identity) -> None:
    sig = next(store.glob("packages/*/*/*.sig"))
    doc = json.loads(sig.read_text())
    text = doc["signature"]
    doc["signature"] = text[:5] + ("A" if text[5] != "A" else "B") + text[6:]
    sig.write_text(json.dumps(doc))
    for secure in (True, False):
        with pytest.raises(PackageSignatureError, match="does not verify"):
            _install(store, tmp_path / "state", alice, secure)
    assert nothing_installed(tmp_path / "state")


def test_missing_signature_is_refused(tmp_path: Path, store: Path, alice: Identity) -> None:
    next(store.glob("packages/*/*/*.sig")).unlink()
    with pytest.raises(PackageSignatureError, match="not signed"):
        _install(store, tmp_path / "state", alice, secure=True)
    # basic too: the signed index says who signed it, so the signature was stripped
    with pytest.raises(PackageSignatureError, match="stripped"):
        _install(store, tmp_path / "state", alice, secure=False)
    assert nothing_installed(tmp_path / "state")


def test_tampered_index_is_refused(tmp_path: Path, store: Path, alice: Identity) -> None:
    index = store / INDEX_FILE
    index.write_text(index.read_text().replace("Emits 1, 2, 3", "Totally safe"))
    for secure in (True, False):
        with pytest.raises(PackageSignatureError, match=r"index\.json\.sig"):
            _install(store, tmp_path / "state", alice, secure)
    assert nothing_installed(tmp_path / "state")
    (store / INDEX_SIG).unlink()
    with pytest.raises(PackageSignatureError, match="not signed"):
        _install(store, tmp_path / "state", alice, secure=True)


def test_untrusted_publisher_refused_when_secure_warned_when_basic(
    tmp_path: Path, store: Path, bob: Identity
) -> None:
    state = tmp_path / "state"
    with pytest.raises(UntrustedKey, match="aif keys trust NAME ed25519:"):
        _install(store, state, bob, secure=True)
    assert nothing_installed(state)
    result = _install(store, state, bob, secure=False)
    package = result.package
    assert len(result.warnings) == 2  # the index and the package
    assert not package.record.trusted
    # the secure profile refuses, at use, what the basic profile installed with a warning
    with pytest.raises(UntrustedKey):
        check_installed(package, trusted={"bob": bob.signing.public_key()}, require_trusted=True)
    with pytest.raises(UntrustedKey):
        resolve_installed(state, "tiny-counter", trusted={}, require_trusted=True)


def test_deep_check_finds_changed_files(tmp_path: Path, store: Path, alice: Identity) -> None:
    package = _install(store, tmp_path / "state", alice).package
    (package.site / MODULE / "__init__.py").write_text("import os\n")
    trusted = {"alice": alice.signing.public_key()}
    assert check_installed(package, trusted=trusted, require_trusted=True) == []
    with pytest.raises(IntegrityError, match="changed since"):
        check_installed(package, trusted=trusted, require_trusted=True, deep=True)


# -- refusals: hostile archives, validly signed ----------------------------------------


def _hostile_tar(member: str, kind: bytes = b"0", link: str = "") -> bytes:
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        good = manifest().to_bytes()
        info = tarfile.TarInfo("aif-package.json")
        info.size = len(good)
        tar.addfile(info, io.BytesIO(good))
        info = tarfile.TarInfo(member)
        info.type = kind
        info.linkname = link
        tar.addfile(info, io.BytesIO(b"") if kind == b"0" else None)
    return buffer.getvalue()


def _wheel_with(member: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, "evil")
    return build_tar({"aif-package.json": manifest(implementation="wheel").to_bytes(),
                      "wheels/evil-1.0-py3-none-any.whl": buffer.getvalue()})  # fmt: skip


HOSTILE = {
    "dotdot": (_hostile_tar("../x"), "'../x'"),
    "absolute": (_hostile_tar("/tmp/aif-store-test-evil"), "'/tmp/aif-store-test-evil'"),
    "symlink": (_hostile_tar("src/link", b"2", "/etc/passwd"), "symbolic link"),
    "hardlink": (_hostile_tar("src/link", b"1", "aif-package.json"), "hard link"),
    "wheel-dotdot": (_wheel_with("../evil.py"), "'../evil.py'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_nothing_is_written(
    tmp_path: Path, alice: Identity, case: str
) -> None:
    archive, said = HOSTILE[case]
    store = tmp_path / "store"
    impl = "wheel" if case.startswith("wheel") else "src"
    publish_archive(store, manifest(implementation=impl), archive, alice.signing)
    state = tmp_path / "state"
    before = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(state))
    client = StoreClient(str(store))
    trusted = {"alice": alice.signing.public_key()}
    with pytest.raises(UnsafeArchive, match=said):
        install(client, "tiny", state, trusted=trusted, require_trusted=True)
    assert nothing_installed(state)
    assert sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(state)) == before
    assert not Path("/tmp/aif-store-test-evil").exists()


def test_oversized_archive_is_refused(tmp_path: Path, alice: Identity) -> None:
    store = tmp_path / "store"
    publish_source(store, aim_source(tmp_path), alice.signing, aim=ENTRY)
    trusted = {"alice": alice.signing.public_key()}
    state = tmp_path / "state"
    small = StoreClient(str(store), limits=Limits(max_download=100))
    with pytest.raises(UnsafeArchive, match="over the download limit of 100"):
        install(small, "tiny-counter", state, trusted=trusted, require_trusted=True)
    tight = Limits(max_total=100)
    with pytest.raises(UnsafeArchive, match="over the limit of 100"):
        install(StoreClient(str(store)), "tiny-counter", state, trusted=trusted,
                require_trusted=True, limits=tight)  # fmt: skip
    assert nothing_installed(state)


def test_an_aiw_package_carries_its_yaml_and_metadata(tmp_path: Path, alice: Identity) -> None:
    src = aim_source(tmp_path)
    (src / "flows").mkdir()
    (src / "flows" / "count.yml").write_text(
        f"name: count-flow\nversion: 2.0.0\naims:\n  gen: {{type: '{ENTRY}'}}\n"
        "  sink: {type: collect}\nconnections: [gen.out -> sink.in]\n"
    )
    done = publish_source(tmp_path / "store", src, alice.signing, workflow="flows/count.yml")
    assert (done.entry.ref, done.entry.kind) == ("count-flow@2.0.0", "AIW")
    assert MODULE not in sys.modules  # the publisher's import was dropped again
    package = _install(tmp_path / "store", tmp_path / "state", alice, ref="count-flow").package
    assert package.record.entry == "flows/count.yml"
    assert (package.site / "flows" / "count.yml").is_file()
    metadata = json.loads((package.path / "aif-package.json").read_text())["metadata"]
    assert [s["Name"] for s in metadata["AIW"]["SubAIMs"]] == ["gen", "sink"]
    with pytest.raises(StoreError, match="is an AIW, not an AIM"):
        load_aim_class(package)
