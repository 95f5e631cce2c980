"""SecureStorage and the storage keys behind it, on real files in a real state directory.

Keys come from a real identity (``KeyRing.init``, unprotected) through ``StorageKeys``,
so these tests also cover the X25519 + HKDF scope keys. Objects of several chunks use a
64-byte chunk size, so they stay small.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from aif.errors import ConfigError, IntegrityError, KeyFileError, KeyNotFound, StorageError
from aif.security.aead import TAG_SIZE, new_key
from aif.security.exchange import StorageKeys, derive_scope_key
from aif.security.keys import KeyRing
from aif.security.stream import STREAM_HEADER_SIZE
from aif.storage import LocalStorage, Storage
from aif.storage.secure import (
    SecureStorage,
    secure_aim_storage,
    secure_global_storage,
    secure_scope_storage,
    secure_scopes,
)

CS = 64


@pytest.fixture
def state(tmp_path: Path) -> Path:
    KeyRing(tmp_path / "state").init()
    return tmp_path / "state"


@pytest.fixture
def keys(state: Path) -> StorageKeys:
    return StorageKeys(state, KeyRing(state).identity())


@pytest.fixture
def store(state: Path, keys: StorageKeys) -> SecureStorage:
    return secure_aim_storage(state, "train", keys.keys_for("aim/train"))


def small_chunks(store: SecureStorage, keys: dict[int, bytes] | None = None) -> SecureStorage:
    """The same store, writing 64-byte chunks."""
    return SecureStorage(
        store.inner, keys or store.generations, store.scope, store.scratch, chunk_size=CS
    )


def object_file(store: SecureStorage, key: str) -> Path:
    assert isinstance(store.inner, LocalStorage)
    return store.inner.root.joinpath(*key.split("/"))


def edit(path: Path, index: int) -> None:
    data = bytearray(path.read_bytes())
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


# -- storage keys ----------------------------------------------------------------------


def test_scope_keys_are_stable_separate_and_only_public_keys_are_stored(
    state: Path, keys: StorageKeys
) -> None:
    train, test, shared = (
        keys.keys_for("aim/train"),
        keys.keys_for("aim/test"),
        keys.keys_for("global"),
    )
    assert list(train) == [1] and len(train[1]) == 32
    assert len({train[1], test[1], shared[1]}) == 3
    again = StorageKeys(state, KeyRing(state).identity())
    assert again.keys_for("aim/train") == train  # derived again, not stored
    path = state / "keys" / "storage.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert train[1].hex() not in text
    assert keys.scopes() == ["aim/test", "aim/train", "global"]


def test_another_identity_derives_other_keys(
    tmp_path: Path, state: Path, keys: StorageKeys
) -> None:
    KeyRing(tmp_path / "other").init()
    stolen = tmp_path / "other" / "keys" / "storage.json"
    keys.keys_for("global")
    shutil.copy(state / "keys" / "storage.json", stolen)  # the file alone is not enough
    other = StorageKeys(tmp_path / "other", KeyRing(tmp_path / "other").identity())
    assert other.keys_for("global") != keys.keys_for("global")


def test_derive_scope_key_binds_scope_and_generation(keys: StorageKeys) -> None:
    controller = keys.identity.exchange
    ephemeral = X25519PrivateKey.generate().public_key()
    one = derive_scope_key(controller, ephemeral, "aim/a", 1)
    assert one == derive_scope_key(controller, ephemeral, "aim/a", 1)
    assert one != derive_scope_key(controller, ephemeral, "aim/b", 1)
    assert one != derive_scope_key(controller, ephemeral, "aim/a", 2)
    assert one != derive_scope_key(X25519PrivateKey.generate(), ephemeral, "aim/a", 1)


def test_rotation_generations_resume_and_finish(keys: StorageKeys) -> None:
    first = keys.keys_for("aim/train")
    assert keys.begin_rotation("aim/train") == 2
    assert keys.rotating("aim/train") == 2
    assert keys.begin_rotation("aim/train") == 2  # unfinished: resumed, not a third
    both = keys.keys_for("aim/train")
    assert list(both) == [1, 2] and both[1] == first[1]
    keys.finish_rotation("aim/train", 2)
    assert list(keys.keys_for("aim/train")) == [2] and keys.rotating("aim/train") is None
    assert keys.begin_rotation("aim/train") == 3
    with pytest.raises(KeyFileError, match="no key generation 9"):
        keys.finish_rotation("aim/train", 9)


@pytest.mark.parametrize("scope", ["", "aim", "aim/", "aim/a/b", "aims/x", "aim/..", "Global"])
def test_bad_scopes_are_refused(keys: StorageKeys, scope: str) -> None:
    with pytest.raises(ConfigError, match="'global' or 'aim/<AIM name>'"):
        keys.keys_for(scope)
    assert not keys.path.exists()


# -- the Storage protocol ------------------------------------------------------------


def test_round_trips_and_stores_no_plaintext(state: Path, store: SecureStorage) -> None:
    assert isinstance(store, Storage)
    secret = b"weights of a secret model " * 20
    store.put("checkpoints/epoch-1.pt", secret)
    store.put("empty", b"")
    store.put("view", memoryview(bytearray(b"abc")))
    assert store.get("checkpoints/epoch-1.pt") == secret
    assert store.get("empty") == b"" and store.get("view") == b"abc"
    assert store.keys() == ["checkpoints/epoch-1.pt", "empty", "view"]
    assert store.keys("check") == ["checkpoints/epoch-1.pt"]
    assert store.exists("empty") and not store.exists("nope")
    on_disk = object_file(store, "checkpoints/epoch-1.pt")
    assert on_disk == state / "secure" / "aims" / "train" / "checkpoints" / "epoch-1.pt"
    assert b"secret model" not in on_disk.read_bytes()
    assert stat.S_IMODE((state / "secure").stat().st_mode) == 0o700
    store.delete("empty")
    with pytest.raises(KeyNotFound):
        store.get("empty")
    store.delete("empty", missing_ok=True)
    with pytest.raises(StorageError, match=r"segment 1 '\.\.'"):
        store.put("../escape", b"x")


def test_objects_of_many_chunks_read_whole_and_by_seeking(store: SecureStorage) -> None:
    small = small_chunks(store)
    data = os.urandom(10 * CS + 5)
    small.put("big", data)
    assert small.get("big") == data
    assert store.get("big") == data  # the chunk size travels in the header
    with small.open_read("big") as handle:
        assert handle.seekable()
        handle.seek(3 * CS - 2)
        assert handle.read(5) == data[3 * CS - 2 : 3 * CS + 3]
        handle.seek(0)
        assert handle.read() == data


def test_path_for_and_commit_keep_plaintext_in_an_owner_only_scratch(
    state: Path, store: SecureStorage
) -> None:
    path = store.path_for("model.pt.tmp")
    assert path.is_relative_to(state / "secure" / "scratch")
    assert stat.S_IMODE(store.scratch.stat().st_mode) == 0o700
    path.write_bytes(b"torch.save output")
    store.commit("model.pt.tmp", "model.pt")
    assert not path.exists()
    assert store.get("model.pt") == b"torch.save output"
    assert store.keys() == ["model.pt"]
    with pytest.raises(KeyNotFound, match="nothing to commit"):
        store.commit("never-written.tmp", "x")


def test_put_file_and_failed_writes_leave_the_old_object(
    tmp_path: Path, store: SecureStorage
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(b"from a file")
    store.put_file("copy", source)
    assert store.get("copy") == b"from a file"
    with pytest.raises(StorageError, match="cannot read source file"):
        store.put_file("copy", tmp_path / "missing")
    with pytest.raises(TypeError):
        store.put("copy", object())  # type: ignore[arg-type]  # fails mid-write
    assert store.get("copy") == b"from a file"
    assert sorted(os.listdir(object_file(store, "copy").parent)) == ["copy"]  # no partials


def test_namespace_extends_the_scope_and_reads_the_same_objects(store: SecureStorage) -> None:
    runs = store.namespace("runs/")
    runs.put("a", b"in a namespace")
    assert store.get("runs/a") == b"in a namespace"
    store.put("runs/b", b"from the parent")
    assert runs.get("b") == b"from the parent"
    assert runs.keys() == ["a", "b"] and runs.scope == "aim/train/runs"
    runs.path_for("c.tmp").write_bytes(b"scratch")
    runs.commit("c.tmp", "c")
    assert store.get("runs/c") == b"scratch"


def test_reserved_partial_names_are_refused(store: SecureStorage) -> None:
    with pytest.raises(StorageError, match="reserved"):
        store.put("dir/.aif-partial-123", b"x")


def test_info_reads_only_the_header(store: SecureStorage) -> None:
    small = small_chunks(store)
    small.put("obj", b"x" * (3 * CS + 1))
    before = time.time()
    info = SecureStorage(store.inner, {5: new_key()}, "aim/train", store.scratch).info("obj")
    assert (info.size, info.algorithm, info.generation) == (3 * CS + 1, "aes-256-gcm", 1)
    assert info.stored_size == STREAM_HEADER_SIZE + 4 * TAG_SIZE + 3 * CS + 1
    assert before - 60 < info.modified <= time.time()
    with pytest.raises(KeyNotFound):
        store.info("missing")


def test_chacha20_poly1305_objects_read_back(state: Path, keys: StorageKeys) -> None:
    base = secure_global_storage(state, keys.keys_for("global"))
    chacha = SecureStorage(
        base.inner, base.generations, "global", base.scratch, "chacha20-poly1305"
    )
    chacha.put("x", b"chacha")
    assert base.get("x") == b"chacha" and base.info("x").algorithm == "chacha20-poly1305"


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["header", "chunk", "tag"])
def test_a_flipped_byte_is_refused_naming_the_object(store: SecureStorage, where: str) -> None:
    small = small_chunks(store)
    small.put("ckpt/w.pt", os.urandom(3 * CS))
    index = {"header": 9, "chunk": STREAM_HEADER_SIZE + CS + TAG_SIZE + 3, "tag": -1}[where]
    edit(object_file(store, "ckpt/w.pt"), index)
    with pytest.raises(IntegrityError, match=r"object 'ckpt/w.pt' of secure storage 'aim/train'"):
        small.get("ckpt/w.pt")
    with pytest.raises(IntegrityError), small.open_read("ckpt/w.pt") as handle:
        handle.read()


def test_truncated_objects_are_refused(store: SecureStorage) -> None:
    small = small_chunks(store)
    for cut in (CS + TAG_SIZE, 1, 7):  # the whole last chunk, then a few bytes
        small.put("w", os.urandom(4 * CS))
        path = object_file(store, "w")
        path.write_bytes(path.read_bytes()[:-cut])
        with pytest.raises(IntegrityError, match="'w'"):
            small.get("w")
        with pytest.raises(IntegrityError):
            small.open_read("w")  # refused on opening, before any byte is used


def test_swapped_objects_are_refused(store: SecureStorage) -> None:
    store.put("a", b"object a")
    store.put("b", b"object b")
    shutil.copy(object_file(store, "a"), object_file(store, "b"))
    with pytest.raises(IntegrityError, match=r"'b'.*swapped with another object"):
        store.get("b")
    assert store.get("a") == b"object a"


def test_an_object_moved_to_another_aims_storage_is_refused(
    state: Path, store: SecureStorage, keys: StorageKeys
) -> None:
    store.put("model", b"train's model")
    other = secure_aim_storage(state, "test", keys.keys_for("aim/test"))
    same_key = secure_aim_storage(state, "test", store.generations)  # even with train's key
    object_file(other, "model").parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(object_file(store, "model"), object_file(other, "model"))
    for reader in (other, same_key):
        with pytest.raises(IntegrityError, match="secure storage 'aim/test'"):
            reader.get("model")


def test_one_aims_keys_cannot_read_another_aims_storage(state: Path, keys: StorageKeys) -> None:
    secure_aim_storage(state, "test", keys.keys_for("aim/test")).put("secret", b"test's")
    with pytest.raises(IntegrityError, match="failed authentication"):
        secure_aim_storage(state, "test", keys.keys_for("aim/train")).get("secret")


def test_wrong_key_and_unknown_generation_are_refused(store: SecureStorage) -> None:
    store.put("x", b"data")
    wrong = SecureStorage(store.inner, {1: new_key()}, store.scope, store.scratch)
    with pytest.raises(IntegrityError, match="failed authentication"):
        wrong.get("x")
    later = SecureStorage(store.inner, {2: new_key()}, store.scope, store.scratch)
    with pytest.raises(
        IntegrityError, match=r"key generation 1, but this storage holds generation\(s\) 2"
    ):
        later.get("x")


def test_a_plaintext_file_in_the_secure_store_is_refused(state: Path, store: SecureStorage) -> None:
    LocalStorage(state / "secure" / "aims" / "train").put("basic.pt", b"written by a basic run")
    with pytest.raises(IntegrityError, match=r"'basic\.pt'.*not written by secure storage"):
        store.get("basic.pt")
    with pytest.raises(IntegrityError, match="not an aif encrypted object"):
        store.info("basic.pt")


def test_bad_settings_are_refused(store: SecureStorage) -> None:
    with pytest.raises(ConfigError, match="no keys"):
        SecureStorage(store.inner, {}, "global", store.scratch)


# -- rotation ----------------------------------------------------------------------------


def fill(store: SecureStorage) -> dict[str, bytes]:
    small = small_chunks(store)
    objects = {f"obj-{i}": os.urandom(i * 30) for i in range(5)}
    objects["deep/nested/x"] = b"nested"
    for key, data in objects.items():
        small.put(key, data)
    store.namespace("ns").put("y", b"namespaced")
    objects["ns/y"] = b"namespaced"
    return objects


def test_rotation_keeps_everything_readable_and_leaves_no_old_generation(
    state: Path, store: SecureStorage, keys: StorageKeys
) -> None:
    objects = fill(store)
    generation = keys.begin_rotation("aim/train")
    both = secure_aim_storage(state, "train", keys.keys_for("aim/train"))
    seen: list[tuple[str, bool]] = []
    report = both.rotate(generation, progress=lambda key, rotated: seen.append((key, rotated)))
    assert (report.rotated, report.skipped, report.total) == (7, 0, 7)
    assert sorted(seen) == sorted((key, True) for key in objects)
    keys.finish_rotation("aim/train", generation)
    after = secure_aim_storage(state, "train", keys.keys_for("aim/train"))
    assert list(after.generations) == [2]
    for key, data in objects.items():
        assert after.get(key) == data
        assert after.info(key).generation == 2
    assert after.rotate().rotated == 0  # nothing left to do


def test_rotation_resumes_after_a_crash_midway(
    state: Path, store: SecureStorage, keys: StorageKeys
) -> None:
    objects = fill(store)
    generation = keys.begin_rotation("aim/train")
    stale = object_file(store, "deep/.aif-partial-0123456789abcdef")
    stale.write_bytes(b"left by an earlier crash")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    crash = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from aif.security.exchange import StorageKeys
        from aif.security.keys import KeyRing
        from aif.storage.secure import secure_aim_storage
        state = Path({str(state)!r})
        keys = StorageKeys(state, KeyRing(state).identity())
        done = []
        def crash(key, rotated):
            done.append(key)
            if len(done) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        store = secure_aim_storage(state, "train", keys.keys_for("aim/train"))
        store.rotate({generation}, progress=crash)
        """
    )
    killed = subprocess.run([sys.executable, "-c", crash], capture_output=True, timeout=60)
    assert killed.returncode == -9, killed.stderr.decode()
    assert keys.begin_rotation("aim/train") == generation  # the same rotation resumes
    both = secure_aim_storage(state, "train", keys.keys_for("aim/train"))
    at = {key: both.info(key).generation for key in both.keys("")}
    assert sorted(at.values()) == [1, 1, 1, 1, 2, 2, 2]  # three done before the kill
    assert all(both.get(key) == data for key, data in objects.items())
    assert not stale.exists()  # the crash's partial write was swept
    report = both.rotate(generation)
    assert (report.rotated, report.skipped) == (4, 3)
    keys.finish_rotation("aim/train", generation)
    after = secure_aim_storage(state, "train", keys.keys_for("aim/train"))
    assert all(after.get(key) == data for key, data in objects.items())


def test_rotation_stops_at_a_tampered_object_and_changes_nothing_else(
    state: Path, store: SecureStorage, keys: StorageKeys
) -> None:
    store.put("a-bad", b"will be tampered")
    store.put("b-good", b"fine")
    edit(object_file(store, "a-bad"), -1)
    generation = keys.begin_rotation("aim/train")
    both = secure_aim_storage(state, "train", keys.keys_for("aim/train"))
    with pytest.raises(IntegrityError, match="'a-bad'"):
        both.rotate(generation)
    assert both.info("a-bad").generation == 1  # left as it was, not re-encrypted
    assert both.get("b-good") == b"fine"
    with pytest.raises(ConfigError, match="generation 7"):
        both.rotate(7)


def test_layout_and_scopes(state: Path, keys: StorageKeys) -> None:
    assert secure_scopes(state) == []
    secure_global_storage(state, keys.keys_for("global")).put("g", b"1")
    secure_aim_storage(state, "b", keys.keys_for("aim/b")).put("x", b"2")
    assert (state / "secure" / "global" / "g").is_file()
    assert secure_scopes(state) == ["global", "aim/b"]
    assert secure_scope_storage(state, "aim/b", keys.keys_for("aim/b")).get("x") == b"2"
    with pytest.raises(ConfigError):
        secure_scope_storage(state, "elsewhere", keys.keys_for("global"))
