"""The chunked STREAM format: big objects encrypted chunk by chunk, and writing them.

Built on ``aif.security.aead`` (its algorithms, key checks and failure wording); used by
secure storage (``aif.storage.secure``) for every object it keeps. This module holds the
format and the writing side; reading (``StreamDecryptor``, ``decrypt_*``) is
``aif.security.stream_reader``.

**Stream object** (``StreamEncryptor`` / ``StreamDecryptor``), the age / Tink construction, for
objects too big to hold twice in memory and for random access (``torch.load`` seeks)::

    0      4   5   6           10          14                  30         37
    +------+---+---+-----------+-----------+-------------------+----------+
    | AIFS | v | a | gen (u32) | chunk u32 |   salt (16 B)     | nonce    |
    +------+---+---+-----------+-----------+-------------------+ prefix 7 +
    | chunk 0: ciphertext (chunk bytes) || tag (16 B)                     |
    | chunk 1: ...                                                        |
    | last chunk: 0..chunk bytes of ciphertext || tag                     |
    +---------------------------------------------------------------------+

    per-object key   = HKDF-SHA256(key, salt, info = "aif-stream-v1")
    nonce of chunk i = nonce prefix (7 B) || i as u32 big-endian || 1 if last else 0
    AAD of chunk i   = the 37 header bytes || the caller's AAD

Why each piece: the counter in the nonce stops chunks being reordered or moved between
positions; the last-chunk flag stops truncation at a chunk boundary (the new last chunk
was sealed with flag 0); the header in every chunk's AAD stops header edits (generation,
chunk size, algorithm); the caller's AAD binds an object to its scope and key, so one
object copied over another is refused; the random salt gives every object its own key,
so the 7-byte nonce prefix never has to be unique across objects. Only the whole
plaintext may end in an empty chunk, so the plaintext size follows from the stored size
(``StreamHeader.plaintext_size``) without decrypting anything.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aif.errors import IntegrityError, SecurityError
from aif.security.aead import (
    ALGORITHM_IDS,
    KEY_SIZE,
    TAG_SIZE,
    VERSION,
    Algorithm,
    Buffer,
    Cipher,
    algorithm_of,
    cipher_for,
)

STREAM_MAGIC = b"AIFS"
_STREAM_HEADER = struct.Struct(">4sBBII16s7s")
STREAM_HEADER_SIZE = _STREAM_HEADER.size  # 37
NONCE_PREFIX_SIZE = 7
SALT_SIZE = 16
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 16
#: Larger chunks would let a forged header make a reader allocate without bound.
MAX_CHUNK_SIZE = 1 << 26
_MAX_CHUNKS = 1 << 32
_STREAM_INFO = b"aif-stream-v1"


_local = threading.local()
#: Largest buffer kept per thread between calls (bigger ones are dropped after use).
_KEEP_BUFFER = DEFAULT_CHUNK_SIZE + TAG_SIZE


@contextlib.contextmanager
def borrowed_buffer(use: Literal["read", "write"], size: int) -> Iterator[memoryview]:
    """A per-thread buffer of ``size`` bytes for ciphertext going to or from a file.

    Reused because a fresh 1 MiB buffer per object costs more than encrypting it: glibc
    hands big blocks back to the kernel on free, and the next one page-faults anew. It
    is taken out of the pool while lent, so a nested use (a source or sink that itself
    encrypts) gets a buffer of its own; sinks copy what they are given, as files do.
    """
    pool = _local.__dict__
    buffer: bytearray | None = pool.pop(use, None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(size)
    view = memoryview(buffer)[:size]
    try:
        yield view
    finally:
        view.release()
        if len(buffer) <= _KEEP_BUFFER:
            pool[use] = buffer


@dataclass(frozen=True)
class StreamHeader:
    """The 37 header bytes of a stream object, parsed."""

    algorithm: Algorithm
    generation: int
    chunk_size: int
    salt: bytes
    nonce_prefix: bytes
    raw: bytes

    @classmethod
    def new(cls, algorithm: Algorithm, generation: int, chunk_size: int) -> StreamHeader:
        """A fresh header with a random salt and nonce prefix."""
        if algorithm not in ALGORITHM_IDS:
            cipher_for(bytes(KEY_SIZE), algorithm)  # raises naming the accepted ones
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise SecurityError(
                f"chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes"
            )
        if not 0 <= generation < 1 << 32:
            raise SecurityError(f"key generation {generation} does not fit in 32 bits")
        salt, prefix = os.urandom(SALT_SIZE), os.urandom(NONCE_PREFIX_SIZE)
        raw = _STREAM_HEADER.pack(
            STREAM_MAGIC, VERSION, ALGORITHM_IDS[algorithm], generation, chunk_size, salt, prefix
        )
        return cls(algorithm, generation, chunk_size, salt, prefix, raw)

    @classmethod
    def parse(cls, data: Buffer, what: str) -> StreamHeader:
        """Parse the first bytes of ``data``; IntegrityError when they are not our header."""
        raw = bytes(memoryview(data).cast("B")[:STREAM_HEADER_SIZE])
        if len(raw) < STREAM_HEADER_SIZE or raw[:4] != STREAM_MAGIC:
            raise IntegrityError(
                f"{what} is not an aif encrypted object (no {STREAM_MAGIC.decode()} header): "
                "it was not written by secure storage (a plaintext file from a basic-profile "
                "run, or copied in by hand?) or its header was damaged; delete it or move it "
                "out of the secure store"
            )
        _, version, alg, generation, chunk_size, salt, prefix = _STREAM_HEADER.unpack(raw)
        if version != VERSION:
            raise IntegrityError(
                f"{what} has stream format version {version}; this aif reads version {VERSION}"
            )
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise IntegrityError(f"{what}: its header has an impossible chunk size {chunk_size}")
        return cls(algorithm_of(alg, what), generation, chunk_size, salt, prefix, raw)

    def chunk_count(self, stored_size: int, what: str) -> int:
        """How many chunks an object of ``stored_size`` bytes holds (IntegrityError if none fit)."""
        body = stored_size - STREAM_HEADER_SIZE
        if body == TAG_SIZE:
            return 1  # the empty plaintext: one empty last chunk
        sealed = self.chunk_size + TAG_SIZE
        count = -(-body // sealed) if body > 0 else 0
        last = body - (count - 1) * sealed
        if count == 0 or last <= TAG_SIZE:
            raise IntegrityError(
                f"{what} is {stored_size} bytes, which no complete object has: it was "
                "truncated or extended; restore it from a copy or delete it"
            )
        return count

    def plaintext_size(self, stored_size: int, what: str) -> int:
        """The plaintext size of an object stored in ``stored_size`` bytes."""
        count = self.chunk_count(stored_size, what)
        return stored_size - STREAM_HEADER_SIZE - count * TAG_SIZE

    def cipher(self, key: bytes) -> Cipher:
        """The AEAD under this object's own key (HKDF of ``key`` and the salt)."""
        cipher_for(key, self.algorithm)  # checks the key's size with a clear message
        subkey = HKDF(hashes.SHA256(), KEY_SIZE, self.salt, _STREAM_INFO).derive(bytes(key))
        return cipher_for(subkey, self.algorithm)

    def nonce(self, index: int, last: bool) -> bytes:
        if index >= _MAX_CHUNKS:
            raise SecurityError(
                f"an object of more than {_MAX_CHUNKS} chunks does not fit the stream format; "
                "use a larger chunk size"
            )
        return self.nonce_prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class StreamEncryptor:
    """Writes a stream object to ``sink``: header now, chunks as they fill, the last on close.

    Use as a context manager: leaving it by an exception writes no last chunk, so what
    reached ``sink`` can never authenticate as a complete object.
    """

    def __init__(
        self,
        key: bytes,
        sink: BinaryIO,
        aad: bytes,
        *,
        generation: int = 1,
        algorithm: Algorithm = "aes-256-gcm",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.header = StreamHeader.new(algorithm, generation, chunk_size)
        self._cipher = self.header.cipher(key)
        self._aad = self.header.raw + aad
        self._sink = sink
        self._pending = bytearray()
        self._index = 0
        self._closed = False
        self.plaintext_size = 0
        sink.write(self.header.raw)

    def __enter__(self) -> StreamEncryptor:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True

    def _emit(self, chunk: Buffer, last: bool) -> None:
        size = len(memoryview(chunk))
        with borrowed_buffer("write", size + TAG_SIZE) as out:
            nonce = self.header.nonce(self._index, last)
            self._cipher.encrypt_into(nonce, chunk, self._aad, out)
            self._sink.write(out)
        self._index += 1

    def write(self, data: Buffer) -> int:
        """Encrypt ``data`` (full chunks go out at once; the rest waits for more or close)."""
        if self._closed:
            raise SecurityError("write to a closed StreamEncryptor")
        view = memoryview(data).cast("B")
        size, cs = len(view), self.header.chunk_size
        self.plaintext_size += size
        while view:
            if not self._pending and len(view) > cs:
                self._emit(view[:cs], last=False)
                view = view[cs:]
            elif len(self._pending) == cs:
                self._emit(self._pending, last=False)  # more data follows: not the last
                self._pending.clear()
            else:
                take = min(cs - len(self._pending), len(view))
                self._pending += view[:take]
                view = view[take:]
        return size

    def close(self) -> None:
        """Write the last chunk (possibly empty only when nothing was written at all)."""
        if self._closed:
            return
        self._emit(self._pending, last=True)
        self._pending.clear()
        self._closed = True


def encrypt_stream(
    key: bytes,
    source: BinaryIO,
    sink: BinaryIO,
    aad: bytes,
    *,
    generation: int = 1,
    algorithm: Algorithm = "aes-256-gcm",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Encrypt everything ``source`` yields into ``sink``; returns the plaintext size."""
    with StreamEncryptor(
        key, sink, aad, generation=generation, algorithm=algorithm, chunk_size=chunk_size
    ) as encryptor:
        while True:
            data = source.read(chunk_size)
            if not data:
                break
            encryptor.write(data)
    return encryptor.plaintext_size


def encrypt_bytes(
    key: bytes,
    plaintext: Buffer,
    aad: bytes,
    *,
    generation: int = 1,
    algorithm: Algorithm = "aes-256-gcm",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """The whole stream object for ``plaintext``, in memory."""
    sink = io.BytesIO()
    with StreamEncryptor(
        key, sink, aad, generation=generation, algorithm=algorithm, chunk_size=chunk_size
    ) as encryptor:
        encryptor.write(plaintext)
    return sink.getvalue()
