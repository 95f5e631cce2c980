"""``record-file``: a sink AIM that keeps every record it receives in files a user keeps.

A hardware AIM's measurements would otherwise end in the run: ``collect`` keeps digests
and a workflow's ``outputs:`` only counts. Connect any output to ``record-file``'s
``in`` and its records land in the folder of whoever started the run::

    results/<run id>/<name>.jsonl   one JSON object a line, one line a record
    results/<run id>/<name>.npz     every numpy array (or torch tensor) of those records

Each line is ``{"seq": 1, "port": "in", "time": 1712.5, "value": ...}``. An array in a
record (the record itself, or one inside a dict or list) is written to the ``.npz`` as
``r<seq>_<i>`` and the line holds ``{"$array": "r000001_0", "dtype": "float32",
"shape": [4, 4]}`` in its place (``arrays: list`` inlines arrays as JSON lists
instead). Bytes become ``{"$bytes": BASE64}``; anything JSON cannot hold becomes
``{"$repr": "..."}``. Read them back with :func:`read_records`.

Both files are flushed after every record: the line file is whole up to the last
record, and the ``.npz`` is a complete archive between records (``numpy.load`` reads it
while the run goes on; a crash while an array is written can cost the archive its
index, which ``zip -FF`` rebuilds from the members before it). ``max_bytes`` bounds
both together; a record that would pass it fails the run with what was written kept.
An existing file is never overwritten unless ``overwrite: true``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

from aif.aims.base import AIM
from aif.communication.ports import Record
from aif.errors import ConfigError, StorageError

#: Characters a file name keeps; every other run of characters becomes ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: The most ``max_bytes`` may be (1 TiB; the .npz takes ZIP64 past 2 GiB, numpy reads it).
MAX_BYTES_LIMIT = 2**40
#: Bytes a zip member costs beyond its data (local header, central directory, npy header).
_MEMBER_OVERHEAD = 512


def safe_name(text: str, fallback: str = "records") -> str:
    """``text`` as one file-name component: letters, digits, ``.``, ``_``, ``-`` only,
    no leading dot (``../x y`` -> ``x_y``); ``fallback`` when nothing is left."""
    return _UNSAFE.sub("_", text).strip("._") or fallback


class RecordFileParams(pydantic.BaseModel):
    """Parameters of ``record-file``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    folder: str | None = pydantic.Field(
        default=None,
        description="Folder of the files, relative to the folder the run was started from; "
        "default results/<run id>.",
    )
    name: str | None = pydantic.Field(
        default=None,
        description="File name stem (sanitized: letters, digits, '.', '_', '-'); "
        "default the AIM's name.",
    )
    max_bytes: int = pydantic.Field(
        default=1024**3,
        ge=1024,
        le=MAX_BYTES_LIMIT,
        description="Most bytes both files may take together; a record past it fails the run.",
    )
    overwrite: bool = pydantic.Field(
        default=False, description="Replace files of the same name instead of refusing to start."
    )
    arrays: Literal["npz", "list"] = pydantic.Field(
        default="npz",
        description="Where arrays go: the side .npz ('npz') or inline as JSON lists ('list').",
    )


class RecordWriter:
    """Appends records to ``<stem>.jsonl`` and their arrays to ``<stem>.npz`` (blocking).

    Every :meth:`write` leaves both files flushed and readable; :meth:`close` is idempotent.
    """

    def __init__(
        self,
        folder: Path,
        stem: str,
        *,
        max_bytes: int,
        overwrite: bool = False,
        arrays: Literal["npz", "list"] = "npz",
    ) -> None:
        self.lines_path = folder / f"{stem}.jsonl"
        self.arrays_path = folder / f"{stem}.npz"
        self.max_bytes = max_bytes
        self.arrays_mode = arrays
        for path in (self.lines_path, self.arrays_path):
            if path.exists() and not overwrite:
                raise ConfigError(
                    f"{path} exists; record-file does not overwrite it: give another 'name' "
                    "or 'folder', or set 'overwrite: true'"
                )
        folder.mkdir(parents=True, exist_ok=True)
        self.arrays_path.unlink(missing_ok=True)
        self._lines = self.lines_path.open("w", encoding="utf-8")
        self.records = 0
        self.arrays = 0
        self.bytes = 0

    @property
    def files(self) -> list[Path]:
        """The files written so far (the ``.npz`` once it holds an array)."""
        return [p for p in (self.lines_path, self.arrays_path) if p.exists()]

    def write(self, port: str, value: Any) -> None:
        """Write one record (StorageError when it would pass ``max_bytes``)."""
        seq = self.records + 1
        found: list[tuple[str, np.ndarray[Any, Any]]] = []
        encoded = self._encode(value, seq, found)
        line = json.dumps({"seq": seq, "port": port, "time": time.time(), "value": encoded})
        size = len(line.encode()) + 1 + sum(a.nbytes + _MEMBER_OVERHEAD for _, a in found)
        if self.bytes + size > self.max_bytes:
            raise StorageError(
                f"record {seq} ({size} bytes) would take {self.lines_path.name} and its "
                f".npz past max_bytes ({self.max_bytes}); {self.records} records are kept "
                f"in {self.lines_path.parent}; raise max_bytes to keep more"
            )
        if found:
            mode: Literal["a", "w"] = "a" if self.arrays_path.exists() else "w"
            with zipfile.ZipFile(self.arrays_path, mode) as archive:
                for key, array in found:
                    big = array.nbytes > 2**30  # ZIP64 sizes, decided before writing
                    with archive.open(f"{key}.npy", "w", force_zip64=big) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
        # the line last: a line names only arrays already in the archive
        self._lines.write(line + "\n")
        self._lines.flush()
        self.records = seq
        self.arrays += len(found)
        self.bytes = sum(p.stat().st_size for p in self.files)

    def close(self) -> None:
        self._lines.close()

    def _encode(self, value: Any, seq: int, found: list[tuple[str, np.ndarray[Any, Any]]]) -> Any:
        if type(value).__module__.startswith("torch"):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            if self.arrays_mode == "list" or value.dtype.hasobject:
                return value.tolist()
            key = f"r{seq:06d}_{len(found)}"
            found.append((key, value))
            return {"$array": key, "dtype": value.dtype.str, "shape": list(value.shape)}
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, dict):
            return {str(k): self._encode(v, seq, found) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._encode(v, seq, found) for v in value]
        return {"$repr": repr(value)}


def read_records(lines_path: str | Path) -> Iterator[dict[str, Any]]:
    """The records ``record-file`` wrote to ``lines_path`` (``NAME.jsonl``), arrays loaded
    from the ``.npz`` beside it: each a dict with ``seq``, ``port``, ``time``, ``value``."""
    lines_path = Path(lines_path)
    arrays_path = lines_path.with_suffix(".npz")
    archive = np.load(arrays_path, allow_pickle=False) if arrays_path.exists() else None

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if "$array" in value and archive is not None:
                return archive[value["$array"]]
            if "$bytes" in value:
                return base64.b64decode(value["$bytes"])
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    try:
        with lines_path.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    record = json.loads(line)
                    record["value"] = decode(record["value"])
                    yield record
    finally:
        if archive is not None:
            archive.close()


class RecordFile(AIM):
    """Writes every record it receives on ``in`` to files in the run's folder.

    JSON lines for the records (``<name>.jsonl``), numpy arrays and tensors in a side
    ``<name>.npz``; flushed after each record, bounded by ``max_bytes``, never
    overwriting unless told. Reports the files, records and bytes as its result.
    """

    inputs = {"in": "any"}
    Params = RecordFileParams
    #: A stopped run still keeps what its upstream sends on the way out.
    drain_on_stop = True

    async def setup(self) -> None:
        assert isinstance(self.params, RecordFileParams)
        params = self.params
        if params.folder is not None:
            folder = (self.work_dir / Path(params.folder).expanduser()).absolute()
        else:
            folder = self.work_dir.absolute() / "results" / safe_name(self.workflow, "run")
        stem = safe_name(params.name if params.name is not None else self.name)
        self.writer = RecordWriter(
            folder,
            stem,
            max_bytes=params.max_bytes,
            overwrite=params.overwrite,
            arrays=params.arrays,
        )
        self.log.info("writing records to %s", self.writer.lines_path)

    async def run(self) -> None:
        writer = self.writer
        async for event in self.events():
            if isinstance(event, Record):
                await asyncio.to_thread(writer.write, event.port, event.value)
        self.log.info(
            "kept %d records (%d arrays, %d bytes) in %s",
            writer.records,
            writer.arrays,
            writer.bytes,
            writer.lines_path.parent,
        )
        await self.result(
            records=writer.records,
            arrays=writer.arrays,
            bytes=writer.bytes,
            files=[str(p) for p in writer.files],
        )

    async def teardown(self) -> None:
        writer: RecordWriter | None = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
