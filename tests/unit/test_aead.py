"""aif.security.aead: one-shot sealed blobs, round trips and every refusal."""

from __future__ import annotations

import pytest

from aif.errors import IntegrityError, SecurityError
from aif.security.aead import Algorithm, new_key, open_sealed, seal

ALGORITHMS: list[Algorithm] = ["aes-256-gcm", "chacha20-poly1305"]


@pytest.fixture
def key() -> bytes:
    return new_key()


def flip(blob: bytes, index: int) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= 0x01
    return bytes(changed)


# -- sealed blobs ----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_seal_round_trips_and_is_randomised(key: bytes, algorithm: Algorithm) -> None:
    one = seal(key, b"secret", b"aad", algorithm)
    assert open_sealed(key, one, b"aad") == b"secret"
    assert seal(key, b"secret", b"aad", algorithm) != one  # a fresh nonce each time
    assert b"secret" not in one


def test_new_key_is_32_random_bytes() -> None:
    assert len(new_key()) == 32 and new_key() != new_key()


@pytest.mark.parametrize("index", [0, 4, 5, 6, 17, 18, -1])
def test_sealed_blob_refuses_any_flipped_byte(key: bytes, index: int) -> None:
    blob = seal(key, b"payload", b"aad")
    with pytest.raises(IntegrityError):
        open_sealed(key, flip(blob, index), b"aad")


def test_sealed_blob_refuses_wrong_key_aad_and_garbage(key: bytes) -> None:
    blob = seal(key, b"payload", b"aad")
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_sealed(new_key(), blob, b"aad")
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_sealed(key, blob, b"other aad", what="package x")
    with pytest.raises(IntegrityError, match="not an aif sealed blob"):
        open_sealed(key, b"PK\x03\x04 a zip file" * 3, b"aad")
    with pytest.raises(IntegrityError, match="not an aif sealed blob"):
        open_sealed(key, blob[:20], b"aad")


def test_sealed_blob_algorithm_byte_is_authenticated(key: bytes) -> None:
    blob = bytearray(seal(key, b"payload", b"aad", "aes-256-gcm"))
    blob[5] = 2  # claim ChaCha20-Poly1305
    with pytest.raises(IntegrityError):
        open_sealed(key, bytes(blob), b"aad")
    blob[5] = 9
    with pytest.raises(IntegrityError, match="unknown algorithm byte 9"):
        open_sealed(key, bytes(blob), b"aad")


def test_a_key_of_the_wrong_size_is_refused_clearly() -> None:
    with pytest.raises(SecurityError, match="32 bytes, got 16"):
        seal(b"k" * 16, b"x", b"")
