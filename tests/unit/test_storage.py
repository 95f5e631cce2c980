"""LocalStorage on real files: round trips, key rules, namespaces, and crash atomicity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aif.errors import KeyNotFound, StorageError
from aif.storage import (
    KEY_RULE,
    LocalStorage,
    Storage,
    aim_storage,
    global_storage,
    validate_key,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


# -- round trips -----------------------------------------------------------------------


def test_local_storage_is_a_storage(store: LocalStorage) -> None:
    assert isinstance(store, Storage)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", bytes(range(256)) * 100, bytearray(b"mutable"), memoryview(b"view")],
    ids=["empty", "small", "binary", "bytearray", "memoryview"],
)
def test_put_get_round_trip(store: LocalStorage, data: bytes | bytearray | memoryview) -> None:
    store.put("dir/sub/obj.bin", data)
    assert store.get("dir/sub/obj.bin") == bytes(data)
    assert store.exists("dir/sub/obj.bin")


def test_put_replaces_old_object(store: LocalStorage) -> None:
    store.put("k", b"old" * 1000)
    store.put("k", b"new")
    assert store.get("k") == b"new"


def test_get_missing_names_key_and_root(store: LocalStorage) -> None:
    with pytest.raises(KeyNotFound) as info:
        store.get("nope/x")
    assert str(info.value) == f"no object under key 'nope/x' in storage {store.root}"
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, StorageError)


def test_get_of_a_directory_is_not_found(store: LocalStorage) -> None:
    store.put("a/b", b"1")
    assert not store.exists("a")
    with pytest.raises(KeyNotFound, match="'a'"):
        store.get("a")


def test_delete(store: LocalStorage) -> None:
    store.put("x/y", b"1")
    store.delete("x/y")
    assert not store.exists("x/y")
    with pytest.raises(KeyNotFound, match="'x/y'"):
        store.delete("x/y")
    store.delete("x/y", missing_ok=True)
    store.delete("never/was", missing_ok=True)


def test_delete_of_a_directory_refused(store: LocalStorage) -> None:
    store.put("a/b", b"1")
    with pytest.raises(KeyNotFound):
        store.delete("a")
    assert store.get("a/b") == b"1"


def test_put_file_and_open_read_stream_large_blobs(store: LocalStorage, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    blob = os.urandom(3 * 2**20 + 17)
    src.write_bytes(blob)
    store.put_file("blobs/big.bin", src)
    with store.open_read("blobs/big.bin") as handle:
        chunks = []
        while chunk := handle.read(2**20):
            chunks.append(chunk)
    assert b"".join(chunks) == blob
    assert store.keys() == ["blobs/big.bin"]


def test_put_file_missing_source_names_path(store: LocalStorage, tmp_path: Path) -> None:
    missing = tmp_path / "absent.bin"
    with pytest.raises(StorageError) as info:
        store.put_file("k", missing)
    assert str(info.value) == f"cannot read source file {missing}: No such file or directory"
    assert not isinstance(info.value, KeyNotFound)
    assert store.keys() == []


def test_open_read_missing(store: LocalStorage) -> None:
    with pytest.raises(KeyNotFound, match="'gone'"):
        store.open_read("gone")


def test_path_for_and_commit(store: LocalStorage) -> None:
    # What a library such as torch.save does: write a file itself, then commit it.
    tmp = store.path_for("ckpt/model.pt.tmp")
    assert tmp.parent.is_dir()
    tmp.write_bytes(b"weights")
    store.commit("ckpt/model.pt.tmp", "ckpt/model.pt")
    assert store.get("ckpt/model.pt") == b"weights"
    assert store.keys() == ["ckpt/model.pt"]
    assert store.path_for("ckpt/model.pt") == store.root / "ckpt" / "model.pt"


def test_commit_across_directories(store: LocalStorage) -> None:
    store.path_for("staging/x").write_bytes(b"1")
    store.commit("staging/x", "final/deep/x")
    assert store.keys() == ["final/deep/x"]


def test_commit_of_missing_tmp(store: LocalStorage) -> None:
    with pytest.raises(KeyNotFound, match=r"'a\.tmp'"):
        store.commit("a.tmp", "a")


def test_object_in_the_way_of_a_directory_is_a_storage_error(store: LocalStorage) -> None:
    store.put("a", b"object")
    with pytest.raises(StorageError) as info:
        store.put("a/b", b"1")
    message = str(info.value)
    assert str(store.root / "a") in message
    assert "File exists" in message
    assert "a file stands where a directory is needed" in message
    assert store.get("a") == b"object"
    assert not store.exists("a/b")
    with pytest.raises(KeyNotFound):
        store.get("a/b")


def test_put_over_a_directory_is_a_storage_error(store: LocalStorage) -> None:
    store.put("a/b", b"1")
    with pytest.raises(StorageError, match="choose another key") as info:
        store.put("a", b"2")
    assert str(store.root / "a") in str(info.value)
    assert store.keys() == ["a/b"]


# -- keys -----------------------------------------------------------------------------


def test_keys_sorted_and_prefix(store: LocalStorage) -> None:
    for key in ["b", "a/2", "a/10", "ckpt/e1", "ckpt/e2", "ck", "z/y/x"]:
        store.put(key, b".")
    assert store.keys() == sorted(["b", "a/2", "a/10", "ckpt/e1", "ckpt/e2", "ck", "z/y/x"])
    assert store.keys("ckpt/") == ["ckpt/e1", "ckpt/e2"]
    assert store.keys("ck") == ["ck", "ckpt/e1", "ckpt/e2"]
    assert store.keys("ckpt/e2") == ["ckpt/e2"]
    assert store.keys("z/y/") == ["z/y/x"]
    assert store.keys("nothing/") == []


def test_keys_of_missing_root_is_empty(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path / "never-created").keys() == []


def test_keys_never_list_temp_or_foreign_files(store: LocalStorage) -> None:
    store.put("d/real", b"1")
    (store.root / "d" / "~aif-0123456789abcdef.tmp").write_bytes(b"partial")
    (store.root / "d" / "not a key").write_bytes(b"x")
    (store.root / "odd dir").mkdir()
    (store.root / "odd dir" / "f").write_bytes(b"x")
    assert store.keys() == ["d/real"]


def test_failed_put_leaves_no_temp_file(store: LocalStorage) -> None:
    store.put("k", b"old")
    with pytest.raises(TypeError):
        store.put("k", "not bytes")  # type: ignore[arg-type]
    assert store.get("k") == b"old"
    assert sorted(p.name for p in store.root.iterdir()) == ["k"]


# -- key rules -----------------------------------------------------------------------

INVALID_KEYS = [
    ("", "a key must not be empty"),
    (
        "/etc/passwd",
        "it starts with '/'; keys are relative to the storage root, drop the leading '/'",
    ),
    ("a//b", "segment 2 is empty"),
    ("a/", "segment 2 is empty"),
    ("../outside", "segment 1 '..' is '..', which would leave or alias its directory"),
    ("a/./b", "segment 2 '.' is '.', which would leave or alias its directory"),
    ("a/b/..", "segment 3 '..' is '..', which would leave or alias its directory"),
    ("a b", "segment 1 'a b' has the character ' ' at column 2"),
    ("dir\\file", "segment 1 'dir\\\\file' has the character '\\\\' at column 4"),
    ("ok/bad\n", "segment 2 'bad\\n' has the character '\\n' at column 4"),
    ("nul\x00", "segment 1 'nul\\x00' has the character '\\x00' at column 4"),
    ("c:/x", "segment 1 'c:' has the character ':' at column 2"),
    ("caf\u00e9", "segment 1 'caf\u00e9' has the character '\u00e9' at column 4"),
    ("x" * 256, f"segment 1 '{'x' * 37}...' is 256 characters long; the limit is 255"),
]


@pytest.mark.parametrize(
    ("key", "reason"), INVALID_KEYS, ids=[repr(k[:12]) for k, _ in INVALID_KEYS]
)
def test_invalid_keys_refused_with_pinned_message(
    store: LocalStorage, key: str, reason: str
) -> None:
    expected = f"invalid storage key {key!r}: {reason}; {KEY_RULE}"
    for call in (store.get, store.exists, store.delete, store.path_for, store.open_read):
        with pytest.raises(StorageError) as info:
            call(key)
        assert str(info.value) == expected
        assert not isinstance(info.value, KeyNotFound)
    with pytest.raises(StorageError) as info:
        store.put(key, b"x")
    assert str(info.value) == expected
    assert not store.root.exists()


@pytest.mark.parametrize("key", ["a", "A-b_c.d", "x/" * 20 + "y", "." + "z" * 254, "...", "-"])
def test_valid_keys_accepted(store: LocalStorage, key: str) -> None:
    assert validate_key(key) == key
    store.put(key, b"v")
    assert store.keys() == [key]


def test_key_rule_text() -> None:
    assert KEY_RULE == (
        "keys are '/'-separated segments of letters, digits, '.', '_' and '-' "
        "(1 to 255 characters each, not '.' or '..'), e.g. 'checkpoints/epoch-3.pt'"
    )


# -- path traversal -------------------------------------------------------------------


def test_path_traversal_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"top secret")
    store = LocalStorage(tmp_path / "store")
    for key in ["../secret.txt", "a/../../secret.txt", str(secret), "./../secret.txt"]:
        with pytest.raises(StorageError, match="invalid storage key"):
            store.get(key)
        with pytest.raises(StorageError, match="invalid storage key"):
            store.put(key, b"overwrite")
    assert secret.read_bytes() == b"top secret"
    for prefix in ["..", "../", "a/..", "/abs"]:
        with pytest.raises(StorageError, match="invalid namespace prefix"):
            store.namespace(prefix)
    for prefix in ["../", "../secret", "/", "a/../b", "x/y z"]:
        with pytest.raises(StorageError, match="invalid key prefix"):
            store.keys(prefix)
    with pytest.raises(StorageError, match="invalid key prefix"):
        store.keys("a/b c")
    with pytest.raises(StorageError, match="invalid storage key"):
        store.commit("ok", "../escaped")


def test_keys_prefix_message_is_pinned(store: LocalStorage) -> None:
    with pytest.raises(StorageError) as info:
        store.keys("a/../")
    assert str(info.value) == (
        f"invalid key prefix 'a/../': segment 2 '..' is '..', which would leave or alias "
        f"its directory; {KEY_RULE}"
    )
    with pytest.raises(StorageError) as info:
        store.keys("ok/b c")
    assert str(info.value) == (
        f"invalid key prefix 'ok/b c': 'b c' has the character ' ' at column 2; {KEY_RULE}"
    )


# -- namespaces -----------------------------------------------------------------------


def test_namespaces_are_isolated(store: LocalStorage) -> None:
    first = store.namespace("aims/first")
    second = store.namespace("aims/second/")
    first.put("model.pt", b"one")
    second.put("model.pt", b"two")
    assert first.get("model.pt") == b"one"
    assert second.get("model.pt") == b"two"
    assert first.keys() == ["model.pt"]
    assert second.keys() == ["model.pt"]
    second.delete("model.pt")
    assert first.get("model.pt") == b"one"
    assert store.keys() == ["aims/first/model.pt"]
    assert store.namespace("aims").namespace("first").get("model.pt") == b"one"
    assert first.root == store.root / "aims" / "first"


def test_global_and_aim_storage_layout(tmp_path: Path) -> None:
    shared = global_storage(tmp_path)
    sim = aim_storage(tmp_path, "simulator")
    chip = aim_storage(tmp_path, "imc-chip_1")
    shared.put("k", b"g")
    sim.put("k", b"s")
    chip.put("k", b"c")
    assert shared.root == tmp_path / "global"
    assert sim.root == tmp_path / "aims" / "simulator"
    assert [s.get("k") for s in (shared, sim, chip)] == [b"g", b"s", b"c"]
    assert LocalStorage(tmp_path).keys() == ["aims/imc-chip_1/k", "aims/simulator/k", "global/k"]


@pytest.mark.parametrize(
    ("aim", "reason"),
    [
        ("../global", "it contains '/', but it must be a single segment"),
        ("..", "it is '..', which would leave or alias its directory"),
        ("", "it is empty"),
        ("my aim", "it has the character ' ' at column 3"),
    ],
)
def test_aim_storage_validates_the_aim_name(tmp_path: Path, aim: str, reason: str) -> None:
    with pytest.raises(StorageError) as info:
        aim_storage(tmp_path, aim)
    assert str(info.value) == f"invalid AIM name for AIM storage {aim!r}: {reason}; {KEY_RULE}"


# -- atomicity under SIGKILL ------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from aif.storage.local import LocalStorage

    store = LocalStorage(Path(sys.argv[1]))
    size = int(sys.argv[2])
    blobs = [bytes([0x41]) * size, bytes([0x42]) * size]
    if not store.exists("big/object.bin"):
        store.put("big/object.bin", blobs[0])
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        store.put("big/object.bin", blobs[i % 2])
    """
)


def test_sigkill_mid_write_leaves_old_or_new_never_partial(tmp_path: Path) -> None:
    """A writer killed at any moment leaves one whole object, and temp files stay hidden.

    The child rewrites an 8 MiB object in a loop, alternating two contents; it is killed
    with SIGKILL after varying delays, so most kills land inside a write.
    """
    size = 8 * 2**20
    root = tmp_path / "store"
    whole = {bytes([0x41]) * size, bytes([0x42]) * size}
    store = LocalStorage(root)
    for delay in [0.0, 0.002, 0.007, 0.013, 0.021, 0.034, 0.055, 0.089]:
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), str(size)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            time.sleep(delay)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        data = store.get("big/object.bin")
        assert len(data) == size
        assert data in whole
        assert store.keys() == ["big/object.bin"]
