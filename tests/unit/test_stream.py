"""aif.security.stream and stream_reader: the chunked STREAM, round trips and every refusal.

Small chunk sizes (64 bytes) give objects of many chunks at a few hundred bytes, so
truncation, reordering and chunk swaps are tested without big buffers.
"""

from __future__ import annotations

import io
import os
import struct

import pytest

from aif.errors import IntegrityError, SecurityError
from aif.security.aead import TAG_SIZE, Algorithm, new_key
from aif.security.stream import (
    STREAM_HEADER_SIZE,
    StreamEncryptor,
    StreamHeader,
    encrypt_bytes,
    encrypt_stream,
)
from aif.security.stream_reader import StreamDecryptor, decrypt_bytes, decrypt_stream

CS = 64  # chunk size for the stream tests
SEALED = CS + TAG_SIZE
ALGORITHMS: list[Algorithm] = ["aes-256-gcm", "chacha20-poly1305"]


@pytest.fixture
def key() -> bytes:
    return new_key()


def stream(key: bytes, data: bytes, aad: bytes = b"scope/key", **kw: object) -> bytes:
    return encrypt_bytes(key, data, aad, chunk_size=CS, **kw)  # type: ignore[arg-type]


def flip(blob: bytes, index: int) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= 0x01
    return bytes(changed)


# -- stream: round trips ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 2 * CS, 5 * CS + 7])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_stream_round_trips_every_size(key: bytes, size: int, algorithm: Algorithm) -> None:
    data = os.urandom(size)
    blob = stream(key, data, algorithm=algorithm)
    header = StreamHeader.parse(blob, "x")
    assert header.algorithm == algorithm and header.chunk_size == CS
    assert header.plaintext_size(len(blob), "x") == size  # known without decrypting
    assert decrypt_bytes(key, blob, b"scope/key") == data


def test_writes_of_any_size_give_the_same_plaintext(key: bytes) -> None:
    data = os.urandom(10 * CS + 3)
    for step in (1, 7, CS, CS + 1, 1000):
        sink = io.BytesIO()
        with StreamEncryptor(key, sink, b"a", chunk_size=CS) as encryptor:
            for start in range(0, len(data), step):
                encryptor.write(data[start : start + step])
        assert decrypt_bytes(key, sink.getvalue(), b"a") == data
        # full chunks and one last chunk: never an empty trailing chunk
        assert len(sink.getvalue()) == STREAM_HEADER_SIZE + 11 * TAG_SIZE + len(data)


def test_file_to_file_round_trip_and_generation_in_header(key: bytes) -> None:
    data = os.urandom(3 * CS + 5)
    sealed = io.BytesIO()
    size = encrypt_stream(key, io.BytesIO(data), sealed, b"a", generation=7, chunk_size=CS)
    assert size == len(data)
    assert StreamHeader.parse(sealed.getvalue(), "x").generation == 7
    plain = io.BytesIO()
    assert decrypt_stream(key, io.BytesIO(sealed.getvalue()), plain, b"a") == len(data)
    assert plain.getvalue() == data


def test_decryptor_seeks_and_reads_any_range(key: bytes) -> None:
    data = os.urandom(7 * CS + 13)
    blob = stream(key, data)
    with StreamDecryptor(key, io.BytesIO(blob), b"scope/key") as reader:
        assert reader.size == len(data)
        for start, length in [(0, 5), (CS - 3, 10), (5 * CS, CS), (len(data) - 4, 100)]:
            reader.seek(start)
            assert reader.read(length) == data[start : start + length]
        reader.seek(-20, os.SEEK_END)
        assert reader.read() == data[-20:]
        reader.seek(0)
        assert reader.read() == data
        with pytest.raises(ValueError):
            reader.seek(-1)


def test_a_failed_encryption_never_makes_a_valid_object(key: bytes) -> None:
    sink = io.BytesIO()
    with pytest.raises(RuntimeError), StreamEncryptor(key, sink, b"a", chunk_size=CS) as enc:
        enc.write(os.urandom(3 * CS))
        raise RuntimeError("the source failed")
    with pytest.raises(IntegrityError):
        decrypt_bytes(key, sink.getvalue(), b"a")


# -- stream: refusals ------------------------------------------------------------------


def test_stream_refuses_a_flipped_byte_in_header_chunk_and_tag(key: bytes) -> None:
    blob = stream(key, os.urandom(3 * CS))
    first_tag = STREAM_HEADER_SIZE + CS  # the tag of chunk 0
    for index in [0, 4, 5, 6, 9, 13, 20, 33, 36, STREAM_HEADER_SIZE, first_tag, len(blob) - 1]:
        with pytest.raises(IntegrityError):
            decrypt_bytes(key, flip(blob, index), b"scope/key")


def test_stream_refuses_truncation_at_a_chunk_boundary_and_dropped_bytes(key: bytes) -> None:
    blob = stream(key, os.urandom(4 * CS))
    last_dropped = blob[: len(blob) - SEALED]  # a whole last chunk gone: still well-formed
    assert StreamHeader.parse(last_dropped, "x").plaintext_size(len(last_dropped), "x") == 3 * CS
    with pytest.raises(IntegrityError, match="failed authentication"):
        decrypt_bytes(key, last_dropped, b"scope/key")
    with pytest.raises(IntegrityError, match="failed authentication"):
        StreamDecryptor(key, io.BytesIO(last_dropped), b"scope/key")  # refused on opening
    for cut in (1, 10, TAG_SIZE, SEALED + 3):
        with pytest.raises(IntegrityError):
            decrypt_bytes(key, blob[:-cut], b"scope/key")
    with pytest.raises(IntegrityError, match="truncated or extended"):
        decrypt_bytes(key, blob[: STREAM_HEADER_SIZE + 5], b"scope/key")
    with pytest.raises(IntegrityError):
        decrypt_bytes(key, blob + b"\x00" * 20, b"scope/key")  # extended


def test_stream_refuses_reordered_and_foreign_chunks(key: bytes) -> None:
    blob = stream(key, os.urandom(4 * CS))
    body = blob[STREAM_HEADER_SIZE:]
    chunks = [body[i : i + SEALED] for i in range(0, len(body), SEALED)]
    swapped = blob[:STREAM_HEADER_SIZE] + chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(IntegrityError):
        decrypt_bytes(key, swapped, b"scope/key")
    other = stream(key, os.urandom(4 * CS))  # same key, same AAD, another object
    spliced = blob[: STREAM_HEADER_SIZE + SEALED] + other[STREAM_HEADER_SIZE + SEALED :]
    with pytest.raises(IntegrityError):
        decrypt_bytes(key, spliced, b"scope/key")


def test_stream_refuses_wrong_key_and_wrong_aad(key: bytes) -> None:
    blob = stream(key, b"model weights")
    with pytest.raises(IntegrityError, match="object 'a' failed authentication"):
        decrypt_bytes(new_key(), blob, b"scope/key", what="object 'a'")
    with pytest.raises(IntegrityError):
        decrypt_bytes(key, blob, b"scope/other-key")


def test_stream_header_edits_are_refused_or_detected(key: bytes) -> None:
    blob = stream(key, os.urandom(2 * CS))
    magic, version, alg, generation, chunk, salt, prefix = struct.unpack(
        ">4sBBII16s7s", blob[:STREAM_HEADER_SIZE]
    )
    body = blob[STREAM_HEADER_SIZE:]

    def with_header(**changes: object) -> bytes:
        fields = dict(m=magic, v=version, a=alg, g=generation, c=chunk, s=salt, p=prefix)
        fields.update(changes)
        return struct.pack(">4sBBII16s7s", *fields.values()) + body

    with pytest.raises(IntegrityError, match="not an aif encrypted object"):
        decrypt_bytes(key, with_header(m=b"AIFX"), b"scope/key")
    with pytest.raises(IntegrityError, match="version 2"):
        decrypt_bytes(key, with_header(v=2), b"scope/key")
    with pytest.raises(IntegrityError, match="impossible chunk size"):
        decrypt_bytes(key, with_header(c=1 << 30), b"scope/key")
    for forged in (with_header(g=generation + 1), with_header(c=CS + 16), with_header(a=2)):
        with pytest.raises(IntegrityError):
            decrypt_bytes(key, forged, b"scope/key")


def test_plaintext_is_not_an_encrypted_object(key: bytes) -> None:
    with pytest.raises(IntegrityError, match="not written by secure storage"):
        decrypt_bytes(key, b"plain checkpoint bytes, written by a basic run" * 2, b"a")
    with pytest.raises(IntegrityError, match="not an aif encrypted object"):
        decrypt_bytes(key, b"", b"a")


def test_bad_stream_settings_are_refused(key: bytes) -> None:
    with pytest.raises(SecurityError, match="chunk size 4"):
        encrypt_bytes(key, b"x", b"", chunk_size=4)
    with pytest.raises(SecurityError, match="unknown algorithm"):
        encrypt_bytes(key, b"x", b"", algorithm="rot13")  # type: ignore[arg-type]
    with pytest.raises(SecurityError, match="generation"):
        encrypt_bytes(key, b"x", b"", generation=-1)


def test_layered_streams_each_get_their_own_buffers(key: bytes) -> None:
    """A sink that itself encrypts (nested use of the per-thread buffers) stays correct."""
    inner_key, data = new_key(), os.urandom(5 * CS + 9)
    sink = io.BytesIO()
    with (
        StreamEncryptor(inner_key, sink, b"inner", chunk_size=CS) as inner,
        StreamEncryptor(key, inner, b"outer", chunk_size=CS) as outer,
    ):
        outer.write(data)
    middle = decrypt_bytes(inner_key, sink.getvalue(), b"inner")
    assert decrypt_bytes(key, middle, b"outer") == data
    layer = StreamDecryptor(inner_key, io.BytesIO(sink.getvalue()), b"inner")
    with StreamDecryptor(key, io.BufferedReader(layer), b"outer") as reader:
        assert reader.read() == data
