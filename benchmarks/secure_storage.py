"""SecureStorage against plain LocalStorage: write and read throughput, same run, same disk.

Run: ``python -m benchmarks.secure_storage [--quick] [--repeats N]``

What is measured, for 1 MiB and 64 MiB objects of random bytes, on a fresh state
directory under the system temp dir:

* *write*: ``put(key, data)``; both stores fsync the file and its directory, so this
  includes the disk. A 1 MiB sample writes 16 objects, a 64 MiB sample one.
* *read*: ``get(key)``, the whole object into memory (from the page cache: both stores
  read what they just wrote).
* *stream read*: ``open_read(key)`` read through in 1 MiB ``read`` calls, as
  ``torch.load`` or a copy would (for SecureStorage: chunks decrypted on demand).

Each repeat runs plain then secure, then secure then plain on the next, so drift in the
machine (other processes, the disk's cache) hits both alike; the figure is the median
over the repeats (``--repeats``, default 9; ``--quick`` 3). Secure storage uses
AES-256-GCM in 1 MiB chunks (``aif.security.aead``).

For scale, AES-256-GCM alone is timed on 1 MiB buffers in memory (the table's last
column: encryption beside writes, decryption beside reads): a read from the page cache
is a memory copy for LocalStorage, so SecureStorage's reads are bounded by the cipher's
speed, not by anything around it.

The last line printed is one JSON object: every median in MiB/s, the cipher's own
speed, and the ratio secure/plain of each (the target is >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aif.security.aead import new_key
from aif.storage.base import Storage
from aif.storage.local import LocalStorage
from aif.storage.secure import secure_aim_storage
from benchmarks.machine import describe, rounded

MIB = 1 << 20
#: Objects per sample: small objects are timed in batches so one sample is not ~1 ms.
SIZES = {"1MiB": (MIB, 16), "64MiB": (64 * MIB, 1)}
OPS = ("write", "read", "stream_read")
TARGET = 0.5


def _stream_read(store: Storage, key: str) -> int:
    total = 0
    with store.open_read(key) as handle:
        while chunk := handle.read(MIB):
            total += len(chunk)
    return total


def _sample(store: Storage, op: str, data: bytes, count: int) -> float:
    """MiB/s of one sample: ``count`` objects of ``data`` written or read."""
    keys = [f"bench/object-{i}" for i in range(count)]
    action: Callable[[str], object]
    if op == "write":
        action = lambda key: store.put(key, data)  # noqa: E731
    elif op == "read":
        action = store.get
    else:
        action = lambda key: _stream_read(store, key)  # noqa: E731
    started = time.perf_counter()
    for key in keys:
        action(key)
    elapsed = time.perf_counter() - started
    return len(data) * count / MIB / elapsed


def cipher_ceiling(repeats: int) -> dict[str, float]:
    """MiB/s of AES-256-GCM alone on 1 MiB chunks in memory: what no encrypted read beats."""
    cipher, nonce, data = AESGCM(new_key()), os.urandom(12), os.urandom(MIB)
    sealed, out = cipher.encrypt(nonce, data, b""), bytearray(MIB)
    rates: dict[str, list[float]] = {"encrypt": [], "decrypt": []}
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(64):
            cipher.encrypt(nonce, data, b"")
        rates["encrypt"].append(64 / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(64):
            cipher.decrypt_into(nonce, sealed, b"", out)
        rates["decrypt"].append(64 / (time.perf_counter() - started))
    return {op: statistics.median(v) for op, v in rates.items()}


def measure(repeats: int) -> dict[str, dict[str, dict[str, float]]]:
    folder = Path(tempfile.mkdtemp(prefix="aif-securebench-"))
    try:
        stores: dict[str, Storage] = {
            "plain": LocalStorage(folder / "plain"),
            "secure": secure_aim_storage(folder / "state", "bench", {1: new_key()}),
        }
        results: dict[str, dict[str, dict[str, float]]] = {}
        for label, (size, count) in SIZES.items():
            data = os.urandom(size)
            samples: dict[str, dict[str, list[float]]] = {
                name: {op: [] for op in OPS} for name in stores
            }
            for store in stores.values():  # warm-up: files exist, caches and code are hot
                for op in OPS:
                    _sample(store, op, data, count)
            for repeat in range(repeats):
                order = list(stores) if repeat % 2 == 0 else list(reversed(stores))
                for op in OPS:
                    for name in order:
                        samples[name][op].append(_sample(stores[name], op, data, count))
                print(f"  {label}: repeat {repeat + 1}/{repeats}", file=sys.stderr, flush=True)
            results[label] = {
                name: {op: statistics.median(v) for op, v in ops.items()}
                for name, ops in samples.items()
            }
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(results: dict[str, Any]) -> dict[str, Any]:
    m = results["machine"]
    ceiling = results["aes_256_gcm_mib_per_s"]
    print(f"\nSecureStorage vs LocalStorage, MiB/s, median ({m['cpu']}, {m['nproc']} cores)")
    print(
        f"\n{'object':<8}{'operation':<14}{'plain':>10}{'secure':>10}{'secure/plain':>14}"
        f"{'AES-GCM alone':>15}"
    )
    ratios: dict[str, float] = {}
    for label, stores in results["mib_per_s"].items():
        for op in OPS:
            plain, secure = stores["plain"][op], stores["secure"][op]
            ratios[f"{op}_{label}"] = secure / plain
            cipher = ceiling["encrypt" if op == "write" else "decrypt"]
            print(
                f"{label:<8}{op:<14}{plain:10.1f}{secure:10.1f}{secure / plain:14.2f}{cipher:15.1f}"
            )
    worst = min(ratios.values())
    print(
        f"\nAES-256-GCM alone, 1 MiB in memory: {ceiling['encrypt']:.0f} MiB/s encrypt, "
        f"{ceiling['decrypt']:.0f} MiB/s decrypt (no secure read can beat these)"
    )
    print(f"worst ratio {worst:.2f} (target >= {TARGET})")
    return {"ratios": ratios, "target": TARGET, "target_met": worst >= TARGET, **results}


def main(repeats: int, quick: bool) -> dict[str, Any]:
    machine = describe(cryptography=cryptography.__version__)
    results = measure(repeats)
    ceiling = cipher_ceiling(repeats)
    return report(
        {
            "machine": machine,
            "quick": quick,
            "repeats": repeats,
            "mib_per_s": results,
            "aes_256_gcm_mib_per_s": ceiling,
        }
    )


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.secure_storage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="3 repeats (a few seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 9)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 9)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    started = time.perf_counter()
    summary = main(repeats, args.quick)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(rounded(summary), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
