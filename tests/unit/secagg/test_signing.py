"""Ed25519 (RFC 8032): known answers, tampering, canonical fields, key checks (T01)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import InvalidKey, InvalidSignature
from secagg.primitives.signing import (
    SigningKey,
    check_public_key,
    sign,
    sign_raw,
    signing_key,
    verify,
    verify_raw,
)
from secagg.rng import DeterministicRandomSource
from tests.vectors.loader import Vector, load, params

# Curve constants of RFC 8032 §5.1, for an independent point decoder.
P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
L = 2**252 + 27742317777372353535851937790883648493  # group order


def rfc8032_decodes(raw: bytes) -> bool:
    """RFC 8032 §5.1.3 point decoding, step by step: True iff ``raw`` is a valid point."""
    y = int.from_bytes(raw, "little")
    sign_bit, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return False
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return sign_bit == 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    return (x * x - x2) % P == 0


def flip(data: bytes, bit: int) -> bytes:
    """``data`` with bit ``bit`` (LSB-first within each byte) inverted."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("vector", params("ed25519_rfc8032"))
def test_known_answers(vector: Vector) -> None:
    """RFC 8032 §7.1 TEST 1-3: public key from seed, deterministic signature, verification."""
    key = SigningKey(vector.bytes_of("secret"))
    message, signature = vector.bytes_of("message"), vector.bytes_of("signature")
    assert key.public == vector.bytes_of("public")
    assert sign_raw(key, message) == signature
    verify_raw(vector.bytes_of("public"), message, signature)
    check_public_key(vector.bytes_of("public"))


@pytest.mark.parametrize("vector", params("ed25519_rfc8032"))
def test_message_tampering_is_rejected(vector: Vector) -> None:
    """Every 1-bit flip of the message, and any appended or dropped byte, fails."""
    public, message = vector.bytes_of("public"), vector.bytes_of("message")
    signature = vector.bytes_of("signature")
    variants = [flip(message, bit) for bit in range(8 * len(message))]
    variants += [message + b"\x00", message[:-1] if message else b"\x72"]
    for tampered in variants:
        with pytest.raises(InvalidSignature):
            verify_raw(public, tampered, signature)


@pytest.mark.parametrize("vector", params("ed25519_rfc8032"))
def test_signature_and_key_tampering_is_rejected(vector: Vector) -> None:
    """1-bit flips of the signature or public key fail: all 768 for TEST 3, every 5th
    bit for the other vectors (to keep the suite fast)."""
    public, message = vector.bytes_of("public"), vector.bytes_of("message")
    signature = vector.bytes_of("signature")
    stride = 1 if vector.id == "rfc8032-test-3" else 5
    for bit in range(0, 8 * len(signature), stride):
        with pytest.raises(InvalidSignature):
            verify_raw(public, message, flip(signature, bit))
    for bit in range(0, 8 * len(public), stride):
        with pytest.raises(InvalidSignature):
            verify_raw(flip(public, bit), message, signature)


@pytest.mark.parametrize("vector", params("ed25519_rfc8032"))
def test_non_canonical_s_is_rejected(vector: Vector) -> None:
    """RFC 8032 §5.1.7 requires S < L: the malleated signature (R, S + L) must fail."""
    signature = vector.bytes_of("signature")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    with pytest.raises(InvalidSignature):
        verify_raw(vector.bytes_of("public"), vector.bytes_of("message"), malleated)


@pytest.mark.parametrize(
    ("public_size", "signature_size"), [(31, 64), (33, 64), (32, 63), (32, 65), (0, 0)]
)
def test_wrong_sizes_fail_verification(public_size: int, signature_size: int) -> None:
    vector = load("ed25519_rfc8032")[2]
    public = (vector.bytes_of("public") + bytes(1))[:public_size]
    signature = (vector.bytes_of("signature") + bytes(1))[:signature_size]
    with pytest.raises(InvalidSignature):
        verify_raw(public, vector.bytes_of("message"), signature)


def test_wrong_key_fails() -> None:
    one, two = load("ed25519_rfc8032")[:2]
    with pytest.raises(InvalidSignature):
        verify_raw(two.bytes_of("public"), one.bytes_of("message"), one.bytes_of("signature"))


def test_invalid_signature_is_opaque() -> None:
    """All failures carry the same message and no chained cause."""
    vector = load("ed25519_rfc8032")[2]
    public, signature = vector.bytes_of("public"), vector.bytes_of("signature")
    texts = set()
    for args in (
        (public, b"other", signature),
        (public[:31], vector.bytes_of("message"), signature),
        (bytes.fromhex("02" + "00" * 31), vector.bytes_of("message"), signature),
    ):
        with pytest.raises(InvalidSignature) as info:
            verify_raw(*args)
        assert info.value.__cause__ is None
        texts.add(str(info.value))
    assert texts == {"invalid signature"}


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_sign_raw_refuses_bad_seed(size: int) -> None:
    with pytest.raises(InvalidKey):
        sign_raw(SigningKey(bytes(size)), b"message")


def test_sign_over_fields_round_trip_and_boundaries() -> None:
    """sign/verify over canonical fields; moving a field boundary changes the signed bytes."""
    key = signing_key(DeterministicRandomSource("signer"))
    signature = sign(key, "ab", "c")
    verify(key.public, signature, "ab", "c")
    assert signature != sign(key, "a", "bc")
    for fields in (("a", "bc"), ("abc",), ("ab", "c", ""), (b"ab", "c"), ("ab", b"c")):
        with pytest.raises(InvalidSignature):
            verify(key.public, signature, *fields)


@given(message=st.binary(max_size=256), seed=st.binary(min_size=32, max_size=32))
def test_sign_verify_round_trip(message: bytes, seed: bytes) -> None:
    key = SigningKey(seed)
    signature = sign_raw(key, message)
    assert len(signature) == 64
    verify_raw(key.public, message, signature)
    with pytest.raises(InvalidSignature):
        verify_raw(key.public, message + b"!", signature)


def test_signing_key_from_rng_and_repr() -> None:
    key = signing_key(DeterministicRandomSource(5))
    assert key == signing_key(DeterministicRandomSource(5))
    assert key != signing_key(DeterministicRandomSource(6))
    text = repr(key)
    assert key.seed.hex()[:16] not in text
    assert key.public.hex()[:16] in text


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_check_public_key_wrong_size(size: int) -> None:
    with pytest.raises(InvalidKey):
        check_public_key(bytes(size))


@pytest.mark.parametrize(
    "raw_hex",
    [
        "02" + "00" * 31,  # y = 2 is not on the curve
        "ff" * 31 + "7f",  # y = 2^255 - 1 >= p
        "ed" + "ff" * 30 + "7f",  # y = p: non-canonical
        "ee" + "ff" * 30 + "7f",  # y = p + 1: non-canonical
        "01" + "00" * 30 + "80",  # y = 1 (x = 0) with the sign bit set
    ],
)
def test_check_public_key_invalid_points(raw_hex: str) -> None:
    raw = bytes.fromhex(raw_hex)
    assert not rfc8032_decodes(raw)
    with pytest.raises(InvalidKey):
        check_public_key(raw)


@given(raw=st.binary(min_size=32, max_size=32))
def test_check_public_key_matches_rfc8032_decoding(raw: bytes) -> None:
    """check_public_key accepts exactly the encodings RFC 8032 decodes (about half)."""
    if rfc8032_decodes(raw):
        check_public_key(raw)
    else:
        with pytest.raises(InvalidKey):
            check_public_key(raw)


@given(seed=st.binary(min_size=32, max_size=32))
def test_check_public_key_accepts_real_keys(seed: bytes) -> None:
    public = SigningKey(seed).public
    assert rfc8032_decodes(public)
    check_public_key(public)
