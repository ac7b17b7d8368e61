"""X25519 (RFC 7748): known answers, agreement symmetry, refusal of bad keys (T01)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import InvalidKey, ParameterError
from secagg.primitives import x25519 as x25519_module
from secagg.primitives.x25519 import (
    X25519KeyPair,
    x25519_keypair,
    x25519_public,
    x25519_shared,
)
from secagg.rng import DeterministicRandomSource
from tests.vectors.loader import Vector, load, params

keys = st.binary(min_size=32, max_size=32)


@pytest.mark.parametrize("vector", params("x25519_rfc7748", "scalar_mult"))
def test_scalar_mult_known_answers(vector: Vector) -> None:
    """RFC 7748 §5.2: X25519(scalar, u) for the two published inputs."""
    shared = x25519_shared(vector.bytes_of("scalar"), vector.bytes_of("u"))
    assert shared == vector.bytes_of("output")


@pytest.mark.parametrize("vector", params("x25519_rfc7748", "diffie_hellman"))
def test_diffie_hellman_known_answer(vector: Vector) -> None:
    """RFC 7748 §6.1: both public keys, and the shared secret computed from either side."""
    a, b = vector.bytes_of("alice_private"), vector.bytes_of("bob_private")
    assert x25519_public(a) == vector.bytes_of("alice_public")
    assert x25519_public(b) == vector.bytes_of("bob_public")
    expected = vector.bytes_of("shared")
    assert x25519_shared(a, vector.bytes_of("bob_public")) == expected
    assert x25519_shared(b, vector.bytes_of("alice_public")) == expected


@pytest.mark.parametrize("vector", params("x25519_rfc7748", "low_order_points"))
def test_low_order_points_are_refused(vector: Vector) -> None:
    """Agreement with a low-order peer key (all-zero secret) raises InvalidKey."""
    private = load("x25519_rfc7748", "diffie_hellman")[0].bytes_of("alice_private")
    with pytest.raises(InvalidKey):
        x25519_shared(private, vector.bytes_of("u"))


def test_invalid_key_is_a_parameter_error() -> None:
    """InvalidKey is catchable as ParameterError and ValueError."""
    with pytest.raises(ParameterError):
        x25519_shared(bytes(32), bytes(32))
    with pytest.raises(ValueError):
        x25519_shared(bytes(32), bytes(32))


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_wrong_lengths_are_refused(size: int) -> None:
    good = load("x25519_rfc7748", "diffie_hellman")[0]
    private, public = good.bytes_of("alice_private"), good.bytes_of("bob_public")
    with pytest.raises(InvalidKey):
        x25519_public(bytes(size))
    with pytest.raises(InvalidKey):
        x25519_shared(bytes(size), public)
    with pytest.raises(InvalidKey):
        x25519_shared(private, bytes(size))


@given(a=keys, b=keys)
def test_agreement_is_symmetric(a: bytes, b: bytes) -> None:
    """X25519(a, B) == X25519(b, A) for random private keys (T01)."""
    shared_ab = x25519_shared(a, x25519_public(b))
    assert shared_ab == x25519_shared(b, x25519_public(a))
    assert len(shared_ab) == 32
    assert shared_ab != bytes(32)


@given(a=keys, b=keys, c=keys)
def test_different_peers_give_different_secrets(a: bytes, b: bytes, c: bytes) -> None:
    """Agreement depends on the peer: a distinct peer key gives a distinct secret."""
    public_b, public_c = x25519_public(b), x25519_public(c)
    if public_b != public_c:
        assert x25519_shared(a, public_b) != x25519_shared(a, public_c)


def test_keypair_from_rng_is_deterministic_and_consistent() -> None:
    pair = x25519_keypair(DeterministicRandomSource(1))
    again = x25519_keypair(DeterministicRandomSource(1))
    other = x25519_keypair(DeterministicRandomSource(2))
    assert (pair.private, pair.public) == (again.private, again.public)
    assert pair.public == x25519_public(pair.private)
    assert other.private != pair.private
    assert other.public != pair.public


@pytest.mark.parametrize("vector", params("x25519_rfc7748", "diffie_hellman"))
def test_keypair_exchange_known_answer(vector: Vector) -> None:
    alice = X25519KeyPair(vector.bytes_of("alice_private"))
    bob = X25519KeyPair(vector.bytes_of("bob_private"))
    assert alice.public == vector.bytes_of("alice_public")
    assert alice.exchange(bob.public) == vector.bytes_of("shared")
    assert bob.exchange(alice.public) == vector.bytes_of("shared")


@pytest.mark.parametrize("vector", params("x25519_rfc7748", "low_order_points"))
def test_keypair_exchange_refuses_low_order_points(vector: Vector) -> None:
    pair = x25519_keypair(DeterministicRandomSource(4))
    with pytest.raises(InvalidKey):
        pair.exchange(vector.bytes_of("u"))


@pytest.mark.parametrize("size", [0, 31, 33])
def test_keypair_refuses_wrong_lengths(size: int) -> None:
    with pytest.raises(InvalidKey):
        X25519KeyPair(bytes(size))
    with pytest.raises(InvalidKey):
        x25519_keypair(DeterministicRandomSource(4)).exchange(bytes(size))


def test_keypair_repr_hides_private_key() -> None:
    pair = x25519_keypair(DeterministicRandomSource(3))
    text = repr(pair)
    assert pair.private.hex() not in text
    assert pair.private.hex()[:16] not in text
    assert pair.public.hex()[:16] in text


def test_all_zero_secret_is_refused_even_if_the_backend_returns_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defence in depth: pycryptodome already rejects low-order points, but if a
    backend ever returned the all-zero secret, x25519_shared must still refuse it."""
    monkeypatch.setattr(x25519_module, "key_agreement", lambda **_: bytes(32))
    pair = x25519_keypair(DeterministicRandomSource(7))
    peer = x25519_keypair(DeterministicRandomSource(8))
    with pytest.raises(InvalidKey):
        x25519_shared(pair.private, peer.public)
    with pytest.raises(InvalidKey):
        pair.exchange(peer.public)
