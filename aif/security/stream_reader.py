"""Reading STREAM objects: whole, into a sink, or as a seekable file decrypted on demand.

The format (header, nonces, AAD, why each piece is there) is in ``aif.security.stream``;
every function here refuses anything that does not authenticate, naming the object
(``what``), with ``IntegrityError``, and never hands out a byte it has not authenticated.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, cast

from cryptography.exceptions import InvalidTag

from aif.errors import IntegrityError
from aif.security.aead import TAG_SIZE, Buffer, authentication_failed
from aif.security.stream import STREAM_HEADER_SIZE, StreamHeader, borrowed_buffer

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


def decrypt_bytes(key: bytes, blob: Buffer, aad: bytes, *, what: str = "encrypted data") -> bytes:
    """The plaintext of a whole stream object held in memory (IntegrityError on any fault)."""
    return decrypt_file(key, io.BytesIO(blob), aad, what=what)


def decrypt_file(
    key: bytes,
    source: BinaryIO,
    aad: bytes,
    *,
    what: str = "encrypted data",
    header: StreamHeader | None = None,
) -> bytes:
    """The whole plaintext of the stream object in ``source`` (seekable); closes it.

    An object of one chunk (up to 1 MiB by default) is read and decrypted in one call,
    which keeps small reads close to the cost of the cipher itself.
    """
    try:
        stored = source.seek(0, os.SEEK_END)
        source.seek(0)
        header = header or StreamHeader.parse(source.read(STREAM_HEADER_SIZE), what)
        if header.chunk_count(stored, what) == 1:
            return _decrypt_single(key, source, aad, header, stored - STREAM_HEADER_SIZE, what)
    except BaseException:
        source.close()
        raise
    with StreamDecryptor(key, source, aad, what=what, header=header, check=False) as reader:
        return reader.readall()


def _decrypt_single(
    key: bytes, source: BinaryIO, aad: bytes, header: StreamHeader, size: int, what: str
) -> bytes:
    """Decrypt the one chunk of a small object; closes ``source``."""
    with source, borrowed_buffer("read", size) as body:
        source.seek(STREAM_HEADER_SIZE)
        if cast(io.RawIOBase, source).readinto(body) != size:
            raise IntegrityError(f"{what} changed size while it was being read")
        try:
            return header.cipher(key).decrypt(header.nonce(0, True), body, header.raw + aad)
        except InvalidTag as exc:
            raise authentication_failed(what) from exc


def _filled(size: int, fill: Callable[[memoryview], object]) -> bytes:
    """``size`` bytes written in place by ``fill``, with no copy afterwards.

    A ``BytesIO`` sized up front lends its buffer (``getbuffer``) and hands it back as
    the ``bytes`` of ``getvalue`` without copying it (CPython shares the buffer once no
    view is left), which saves a full copy of a 64 MiB object over ``bytes(bytearray)``.
    """
    out = io.BytesIO()
    if size:
        out.seek(size - 1)
        out.write(b"\0")
    view = out.getbuffer()
    try:
        fill(view)
    finally:
        view.release()
    return out.getvalue()


class StreamDecryptor(io.RawIOBase):
    """A seekable, read-only file object on the plaintext of a stream object in ``source``.

    Chunks are decrypted on demand, so memory stays at one chunk whatever the object's
    size. The stored size is taken once when opening and fixes which chunk is last, so
    every chunk read is fully authenticated. With ``check`` (the default) the last chunk
    of an object of several chunks is decrypted on opening, so a wrong key, a swapped
    object or a truncated one is refused before its first chunk is used; an object of
    one chunk is checked by the first read, which decrypts it whole. Closing it closes
    ``source``.
    """

    def __init__(
        self,
        key: bytes,
        source: BinaryIO,
        aad: bytes,
        *,
        what: str = "encrypted data",
        header: StreamHeader | None = None,
        check: bool = True,
    ) -> None:
        super().__init__()
        self._source, self._what = source, what
        try:
            stored = source.seek(0, os.SEEK_END)
            source.seek(0)
            self.header = header or StreamHeader.parse(source.read(STREAM_HEADER_SIZE), what)
            self._count = self.header.chunk_count(stored, what)
            self.size = stored - STREAM_HEADER_SIZE - self._count * TAG_SIZE
            self._cipher = self.header.cipher(key)
        except BaseException:
            source.close()
            raise
        self._aad = self.header.raw + aad
        # Buffers no bigger than the object: small objects stay cheap to open.
        self._buffer_size = min(self.header.chunk_size, self.size)
        self._plain: bytearray | None = None
        self._cached = -1
        self._pos = 0
        if check and self._count > 1:
            try:
                self._load(self._count - 1)
            except BaseException:
                self.close()
                raise

    def _chunk_len(self, index: int) -> int:
        return min(self.header.chunk_size, self.size - index * self.header.chunk_size)

    def _decrypt_into(self, index: int, out: memoryview) -> None:
        size = self._chunk_len(index)
        self._source.seek(STREAM_HEADER_SIZE + index * (self.header.chunk_size + TAG_SIZE))
        with borrowed_buffer("read", size + TAG_SIZE) as sealed:
            if cast(io.RawIOBase, self._source).readinto(sealed) != size + TAG_SIZE:
                raise IntegrityError(f"{self._what} changed size while it was being read")
            try:
                nonce = self.header.nonce(index, index == self._count - 1)
                self._cipher.decrypt_into(nonce, sealed, self._aad, out[:size])
            except InvalidTag as exc:
                raise authentication_failed(self._what) from exc

    def _load(self, index: int) -> bytearray:
        if self._plain is None:
            self._plain = bytearray(self._buffer_size)
        if index != self._cached:
            self._cached = -1
            self._decrypt_into(index, memoryview(self._plain))
            self._cached = index
        return self._plain

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        out = memoryview(buffer).cast("B")
        done = 0
        cs = self.header.chunk_size
        while done < len(out) and self._pos < self.size:
            index, offset = divmod(self._pos, cs)
            size = self._chunk_len(index)
            if offset == 0 and len(out) - done >= size and index != self._cached:
                self._decrypt_into(index, out[done : done + size])  # straight into the caller's
                n = size
            else:
                plain = self._load(index)
                n = min(size - offset, len(out) - done)
                out[done : done + n] = plain[offset : offset + n]
            done += n
            self._pos += n
        return done

    def readall(self) -> bytes:
        return _filled(max(0, self.size - self._pos), self.readinto)

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()


def decrypt_stream(
    key: bytes, source: BinaryIO, sink: BinaryIO, aad: bytes, *, what: str = "encrypted data"
) -> int:
    """Decrypt the stream object in ``source`` (seekable) into ``sink``; returns its size.

    Closes ``source``. On IntegrityError part of the plaintext may already be in ``sink``:
    every part written was authenticated, but the whole was not; discard it.
    """
    with StreamDecryptor(key, source, aad, what=what) as reader:
        buffer = memoryview(bytearray(max(1, min(reader.header.chunk_size, reader.size))))
        while n := reader.readinto(buffer):
            sink.write(buffer[:n])
        return reader.size
