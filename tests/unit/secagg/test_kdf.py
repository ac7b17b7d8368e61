"""HKDF-SHA256 (RFC 5869) and labelled, session-bound key derivation (T01)."""

from __future__ import annotations

import hashlib
import hmac
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.encoding import encode
from secagg.errors import ParameterError
from secagg.primitives.kdf import LABELS, PROTOCOL_ID, derive_key, hkdf_sha256
from tests.vectors.loader import Vector, params

SECRET = bytes(range(32))


@pytest.mark.parametrize("vector", params("hkdf_rfc5869"))
def test_hkdf_known_answers(vector: Vector) -> None:
    """RFC 5869 A.1-A.3 (A.3: empty salt and empty info)."""
    okm = hkdf_sha256(
        vector.bytes_of("ikm"),
        salt=vector.bytes_of("salt"),
        info=vector.bytes_of("info"),
        length=vector.int_of("length"),
    )
    assert okm == vector.bytes_of("okm")


@pytest.mark.parametrize("vector", params("hkdf_rfc5869"))
def test_hkdf_vector_prk_is_consistent(vector: Vector) -> None:
    """The stored PRK is HMAC(salt or HashLen zeros, IKM): the file is self-consistent."""
    salt = vector.bytes_of("salt") or bytes(32)
    prk = hmac.new(salt, vector.bytes_of("ikm"), hashlib.sha256).digest()
    assert prk == vector.bytes_of("prk")


@given(ikm=st.binary(max_size=64), info=st.binary(max_size=32), length=st.integers(1, 100))
def test_empty_salt_means_hash_length_zeros(ikm: bytes, info: bytes, length: int) -> None:
    """RFC 5869 §2.2: an absent salt is HashLen zero bytes."""
    assert hkdf_sha256(ikm, salt=b"", info=info, length=length) == hkdf_sha256(
        ikm, salt=bytes(32), info=info, length=length
    )


def test_hkdf_output_is_a_prefix_of_longer_output() -> None:
    """HKDF-Expand is a stream: shorter outputs are prefixes of longer ones."""
    long = hkdf_sha256(SECRET, salt=b"s", info=b"i", length=8160)
    assert len(long) == 8160
    for length in (1, 31, 32, 33, 100):
        assert hkdf_sha256(SECRET, salt=b"s", info=b"i", length=length) == long[:length]


@pytest.mark.parametrize("length", [0, -1, 8161])
def test_hkdf_length_out_of_range(length: int) -> None:
    with pytest.raises(ParameterError):
        hkdf_sha256(SECRET, salt=b"", info=b"", length=length)


@pytest.mark.parametrize("vector", params("derive_key", "derive_key"))
def test_derive_key_known_answers(vector: Vector) -> None:
    context = tuple(vector.raw_of("context"))
    key = derive_key(
        vector.bytes_of("secret"),
        label=vector.str_of("label"),
        session_id=vector.bytes_of("session_id"),
        context=context,
        length=vector.int_of("length"),
    )
    assert key == vector.bytes_of("key")


def test_derive_key_is_hkdf_with_session_salt_and_encoded_info(session_id: bytes) -> None:
    """The documented construction: salt = session id, info = encode(protocol, label, *ctx)."""
    key = derive_key(SECRET, label="test", session_id=session_id, context=(1, "x", b"y"))
    info = encode(PROTOCOL_ID, "test", 1, "x", b"y")
    assert key == hkdf_sha256(SECRET, salt=session_id, info=info)


def test_derive_key_separates_label_session_and_context(session_id: bytes) -> None:
    """Every change of label, session id, context or secret gives a different key."""
    other_session = hashlib.sha256(b"another session").digest()
    keys: dict[bytes, tuple[object, ...]] = {}
    contexts: list[tuple[int | str | bytes, ...]] = [
        (),
        (1,),
        (1, 2),
        (2, 1),
        (12,),
        (1, 2, 3),
        ("1",),
        (b"\x01",),
    ]
    secrets = [SECRET, bytes(32), SECRET[:16]]
    for label, session, context, secret in itertools.product(
        sorted(LABELS), [session_id, other_session], contexts, secrets
    ):
        key = derive_key(secret, label=label, session_id=session, context=context)
        assert len(key) == 32
        where = (label, session, context, secret)
        assert key not in keys, f"{where} collides with {keys.get(key)}"
        keys[key] = where
    assert len(keys) == len(LABELS) * 2 * len(contexts) * len(secrets)


def test_derive_key_is_deterministic(session_id: bytes) -> None:
    first = derive_key(SECRET, label="self-mask", session_id=session_id, context=(4,))
    assert first == derive_key(SECRET, label="self-mask", session_id=session_id, context=(4,))


@pytest.mark.parametrize("label", ["", "Test", "pairwise_mask", "pairwise-mask ", "unknown"])
def test_derive_key_unknown_label(label: str, session_id: bytes) -> None:
    with pytest.raises(ParameterError):
        derive_key(SECRET, label=label, session_id=session_id)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_derive_key_session_id_length(size: int) -> None:
    with pytest.raises(ParameterError):
        derive_key(SECRET, label="test", session_id=bytes(size))


@pytest.mark.parametrize("size", [0, 1, 15])
def test_derive_key_short_secret(size: int, session_id: bytes) -> None:
    with pytest.raises(ParameterError):
        derive_key(bytes(size), label="test", session_id=session_id)


def test_labels_are_the_documented_set() -> None:
    assert {"pairwise-mask", "self-mask", "share-encryption", "he-key-transport"} <= LABELS
    assert all(isinstance(label, str) and label for label in LABELS)
