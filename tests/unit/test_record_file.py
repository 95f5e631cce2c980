"""``record-file``'s writer: JSON lines, a side .npz, flushed per record, bounded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aif.aims.record_file import RecordWriter, read_records, safe_name
from aif.errors import ConfigError, StorageError


def test_records_and_their_arrays_come_back_as_they_were(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "out", "meas", max_bytes=2**20)
    tensor = np.arange(6, dtype=np.float32).reshape(2, 3)
    writer.write("in", tensor)
    # readable between records, not only once closed
    assert json.loads((tmp_path / "out" / "meas.jsonl").read_text())["value"] == {
        "$array": "r000001_0",
        "dtype": "<f4",
        "shape": [2, 3],
    }
    with np.load(tmp_path / "out" / "meas.npz") as archive:
        assert archive.files == ["r000001_0"]
    record = {
        "job": "cnn@chip",
        "y": np.ones(3, dtype=np.int16),
        "layers": [np.zeros((1, 2)), 7],
        "scale": np.float64(0.5),
        "raw": b"\x00\x01",
        "pair": (1, None),
        "odd": {1: complex(1, 2)},
    }
    writer.write("in", record)
    writer.write("in", "plain")
    writer.close()
    back = list(read_records(tmp_path / "out" / "meas.jsonl"))
    assert [r["seq"] for r in back] == [1, 2, 3]
    assert np.array_equal(back[0]["value"], tensor) and back[0]["value"].dtype == np.float32
    value = back[1]["value"]
    assert value["job"] == "cnn@chip" and value["scale"] == 0.5 and value["raw"] == b"\x00\x01"
    assert np.array_equal(value["y"], record["y"]) and value["y"].dtype == np.int16
    assert np.array_equal(value["layers"][0], np.zeros((1, 2))) and value["layers"][1] == 7
    assert value["pair"] == [1, None] and value["odd"] == {"1": {"$repr": "(1+2j)"}}
    assert back[2]["value"] == "plain"
    assert (writer.records, writer.arrays) == (3, 3)
    assert writer.bytes == sum(p.stat().st_size for p in writer.files)


def test_arrays_as_lists_leave_no_npz(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path, "m", max_bytes=2**20, arrays="list")
    writer.write("in", {"v": np.array([1.5, 2.5])})
    writer.close()
    assert writer.files == [tmp_path / "m.jsonl"]
    assert next(read_records(tmp_path / "m.jsonl"))["value"] == {"v": [1.5, 2.5]}


def test_a_record_past_max_bytes_is_refused_and_what_came_before_is_kept(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path, "m", max_bytes=4096)
    writer.write("in", np.zeros(100, dtype=np.float32))
    with pytest.raises(StorageError, match=r"record 2 .* past max_bytes \(4096\); 1 records"):
        writer.write("in", np.zeros(1000, dtype=np.float32))
    writer.close()
    assert [r["seq"] for r in read_records(tmp_path / "m.jsonl")] == [1]
    with np.load(tmp_path / "m.npz") as archive:
        assert archive.files == ["r000001_0"]


def test_existing_files_are_not_overwritten_unless_told(tmp_path: Path) -> None:
    (tmp_path / "m.npz").write_bytes(b"old")
    with pytest.raises(ConfigError, match=r"m.npz exists; .*overwrite: true"):
        RecordWriter(tmp_path, "m", max_bytes=2**20)
    assert (tmp_path / "m.npz").read_bytes() == b"old"
    writer = RecordWriter(tmp_path, "m", max_bytes=2**20, overwrite=True)
    writer.write("in", 1)
    writer.close()
    assert writer.files == [tmp_path / "m.jsonl"]  # the old .npz is gone with it


def test_file_names_are_sanitized() -> None:
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("chip results: run 1") == "chip_results_run_1"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("..", "records") == "records"
    assert safe_name("ok-name_1.x") == "ok-name_1.x"
