"""aif.security.exchange's storage-use lock: shared for users of storage keys, exclusive
for a rotation. Each lock object holds its own open file, so two of them in one process
conflict exactly as two processes would (the cross-process case is in test_cli_keys)."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import pytest

from aif.errors import StorageError
from aif.security.exchange import STORAGE_USE_LOCK, StorageInUse, StorageRotationLock


def test_users_share_and_a_rotation_waits_for_all_of_them(tmp_path: Path) -> None:
    first, second = StorageInUse(tmp_path), StorageInUse(tmp_path)
    first.acquire()
    second.acquire()  # any number of controllers at once
    lock_file = tmp_path / "keys" / STORAGE_USE_LOCK
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700

    rotation = StorageRotationLock(tmp_path)
    for still_held in (first, second):
        with pytest.raises(StorageError) as info:
            rotation.acquire()
        assert str(info.value) == (
            f"a controller (aif run or a daemon) is using secure storage in {tmp_path}; "
            "wait for it to end, then rotate"
        )
        assert not rotation.held
        still_held.release()
    rotation.acquire()
    assert rotation.held


def test_a_user_is_refused_while_a_rotation_runs_unless_it_waits(tmp_path: Path) -> None:
    with StorageRotationLock(tmp_path) as rotation:
        user = StorageInUse(tmp_path)
        with pytest.raises(StorageError, match=r"`aif keys rotate` is re-encrypting .* wait"):
            user.acquire()
        assert not user.held

        got: list[float] = []
        waiter = threading.Thread(target=lambda: (user.acquire(wait=True), got.append(1.0)))
        waiter.start()
        time.sleep(0.2)
        assert not got  # blocked behind the rotation
        rotation.release()
        waiter.join(timeout=10)
    assert got and user.held
    user.release()


def test_acquire_and_release_are_idempotent(tmp_path: Path) -> None:
    user = StorageInUse(tmp_path)
    user.release()  # never held: a no-op
    user.acquire()
    user.acquire()
    assert user.held
    user.release()
    user.release()
    assert not user.held
    with StorageInUse(tmp_path) as held:
        assert held.held
    assert not held.held
    with StorageRotationLock(tmp_path):  # nobody left holding it
        pass
