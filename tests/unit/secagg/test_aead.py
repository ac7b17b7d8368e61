"""AES-256-GCM with mandatory AAD: known answer, tampering, one opaque error (T01)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import DecryptionError, ParameterError
from secagg.primitives.aead import (
    NONCE_BYTES,
    OVERHEAD,
    TAG_BYTES,
    open_sealed,
    seal,
    seal_with_nonce,
)
from secagg.rng import DeterministicRandomSource
from tests.vectors.loader import Vector, load, params

OPAQUE = "decryption failed"


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def assert_opaque_failure(key: bytes, sealed: bytes, aad: bytes) -> None:
    """open_sealed fails with DecryptionError whose text and state say nothing."""
    with pytest.raises(DecryptionError) as info:
        open_sealed(key, sealed, aad=aad)
    error = info.value
    assert str(error) == OPAQUE
    assert error.args == (OPAQUE,)
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None
    assert type(error) is DecryptionError


def kat() -> Vector:
    return load("aes_gcm")[0]


@pytest.mark.parametrize("vector", params("aes_gcm"))
def test_known_answer(vector: Vector) -> None:
    """gcm-spec Test Case 16 in our nonce || ciphertext || tag format."""
    key, nonce, aad = vector.bytes_of("key"), vector.bytes_of("nonce"), vector.bytes_of("aad")
    plaintext = vector.bytes_of("plaintext")
    expected = nonce + vector.bytes_of("ciphertext") + vector.bytes_of("tag")
    sealed = seal_with_nonce(key, plaintext, aad=aad, nonce=nonce)
    assert sealed == expected
    assert len(sealed) == len(plaintext) + OVERHEAD
    assert open_sealed(key, expected, aad=aad) == plaintext


def test_every_bit_flip_of_nonce_ciphertext_and_tag_is_rejected() -> None:
    """100% of 1-bit changes anywhere in nonce || ciphertext || tag are rejected."""
    vector = kat()
    key, aad = vector.bytes_of("key"), vector.bytes_of("aad")
    sealed = vector.bytes_of("nonce") + vector.bytes_of("ciphertext") + vector.bytes_of("tag")
    regions = {
        "nonce": range(0, 8 * NONCE_BYTES),
        "ciphertext": range(8 * NONCE_BYTES, 8 * (len(sealed) - TAG_BYTES)),
        "tag": range(8 * (len(sealed) - TAG_BYTES), 8 * len(sealed)),
    }
    assert all(len(bits) > 0 for bits in regions.values())
    for bits in regions.values():
        for bit in bits:
            assert_opaque_failure(key, flip(sealed, bit), aad)


def test_every_bit_flip_of_aad_is_rejected() -> None:
    vector = kat()
    key, aad = vector.bytes_of("key"), vector.bytes_of("aad")
    sealed = vector.bytes_of("nonce") + vector.bytes_of("ciphertext") + vector.bytes_of("tag")
    for bit in range(8 * len(aad)):
        assert_opaque_failure(key, sealed, flip(aad, bit))
    for other in (b"", aad[:-1], aad + b"\x00"):
        assert_opaque_failure(key, sealed, other)


def test_wrong_key_is_rejected() -> None:
    vector = kat()
    key, aad = vector.bytes_of("key"), vector.bytes_of("aad")
    sealed = vector.bytes_of("nonce") + vector.bytes_of("ciphertext") + vector.bytes_of("tag")
    for bit in (0, 7, 128, 255):
        assert_opaque_failure(flip(key, bit), sealed, aad)
    for bad_key in (bytes(32), key[:16], key[:31], key + b"\x00", b""):
        assert_opaque_failure(bad_key, sealed, aad)


def test_truncated_and_extended_ciphertexts_are_rejected() -> None:
    vector = kat()
    key, aad = vector.bytes_of("key"), vector.bytes_of("aad")
    sealed = vector.bytes_of("nonce") + vector.bytes_of("ciphertext") + vector.bytes_of("tag")
    for cut in (0, 1, NONCE_BYTES, OVERHEAD - 1, OVERHEAD, len(sealed) - 1):
        assert_opaque_failure(key, sealed[:cut], aad)
    assert_opaque_failure(key, sealed + b"\x00", aad)
    assert_opaque_failure(key, sealed[1:], aad)


@given(
    key=st.binary(min_size=32, max_size=32),
    plaintext=st.binary(max_size=200),
    aad=st.binary(max_size=64),
    seed=st.integers(0, 2**32),
)
def test_seal_open_round_trip(key: bytes, plaintext: bytes, aad: bytes, seed: int) -> None:
    sealed = seal(key, plaintext, aad=aad, rng=DeterministicRandomSource(seed))
    assert len(sealed) == len(plaintext) + OVERHEAD
    assert open_sealed(key, sealed, aad=aad) == plaintext
    assert_opaque_failure(key, sealed, aad + b"x")


@given(key=st.binary(min_size=32, max_size=32), data=st.data())
def test_random_single_bit_flips_are_rejected(key: bytes, data: st.DataObject) -> None:
    plaintext = data.draw(st.binary(max_size=64), label="plaintext")
    aad = data.draw(st.binary(min_size=1, max_size=32), label="aad")
    sealed = seal(key, plaintext, aad=aad, rng=DeterministicRandomSource(key))
    bit = data.draw(st.integers(0, 8 * len(sealed) - 1), label="bit")
    assert_opaque_failure(key, flip(sealed, bit), aad)
    aad_bit = data.draw(st.integers(0, 8 * len(aad) - 1), label="aad_bit")
    assert_opaque_failure(key, sealed, flip(aad, aad_bit))


def test_seal_draws_fresh_nonces() -> None:
    rng = DeterministicRandomSource("nonces")
    key = bytes(range(32))
    sealed = [seal(key, b"same", aad=b"ad", rng=rng) for _ in range(20)]
    assert len({s[:NONCE_BYTES] for s in sealed}) == 20
    assert len(set(sealed)) == 20


def test_aad_is_a_required_keyword() -> None:
    key = bytes(32)
    rng = DeterministicRandomSource(0)
    with pytest.raises(TypeError):
        seal(key, b"x", rng=rng)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        open_sealed(key, bytes(OVERHEAD))  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("key_size", "nonce_size"), [(16, 12), (31, 12), (33, 12), (32, 8), (32, 16), (32, 0)]
)
def test_seal_with_nonce_refuses_bad_sizes(key_size: int, nonce_size: int) -> None:
    with pytest.raises(ParameterError):
        seal_with_nonce(bytes(key_size), b"x", aad=b"", nonce=bytes(nonce_size))
