"""Shamir sharing: fixed vectors, index and encoding checks (T02; properties in tests/property)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from secagg.errors import InvalidShare, ParameterError
from secagg.primitives.shamir import (
    LIMBS,
    PRIME,
    SHARE_BYTES,
    lagrange_at_zero,
    limbs_to_secrets,
    reconstruct,
    reconstruct_with,
    secrets_to_limbs,
    share_from_bytes,
    shares_to_bytes,
    split,
)
from secagg.rng import DeterministicRandomSource
from tests.vectors.loader import Vector, params

SECRET = bytes(range(32))


def shares_of(secrets: list[bytes], n: int, t: int, seed: object = "shamir-unit") -> np.ndarray:
    return split(secrets, n=n, t=t, rng=DeterministicRandomSource(str(seed)))


@pytest.mark.parametrize("vector", params("shamir"))
def test_split_known_answers(vector: Vector) -> None:
    """split() for a fixed DeterministicRandomSource: every holder's share bytes."""
    n, t = vector.int_of("n"), vector.int_of("t")
    secrets = [bytes.fromhex(s) for s in vector.raw_of("secrets")]
    shares = split(secrets, n=n, t=t, rng=DeterministicRandomSource(vector.str_of("rng_seed")))
    expected = vector.raw_of("shares")
    assert shares.shape == (n, len(secrets), LIMBS)
    assert shares.dtype == np.uint32
    for i in range(n):
        for j in range(len(secrets)):
            assert shares_to_bytes(shares[i, j]).hex() == expected[i][j], (i, j)
    # ... and the stored shares reconstruct the stored secrets from the first t holders.
    parsed = np.stack(
        [np.stack([share_from_bytes(bytes.fromhex(h)) for h in row]) for row in expected[:t]]
    )
    assert reconstruct(list(range(1, t + 1)), parsed, t=t) == secrets


def test_threshold_one_shares_are_the_secret() -> None:
    """t = 1: the polynomial is constant, every share is the secret's limbs."""
    shares = shares_of([SECRET], n=4, t=1)
    limbs = secrets_to_limbs([SECRET])[0]
    for i in range(4):
        assert [int(v) for v in shares[i, 0]] == [int(v) for v in limbs]


def test_limbs_round_trip() -> None:
    secrets = [SECRET, bytes(32), b"\xff" * 32]
    limbs = secrets_to_limbs(secrets)
    assert limbs.shape == (3, LIMBS)
    assert int(limbs[0, 0]) == 0x0100  # little-endian 16-bit limbs
    assert limbs_to_secrets(limbs) == secrets


def test_limbs_out_of_range_are_invalid() -> None:
    limbs = secrets_to_limbs([SECRET])
    for bad in (1 << 16, PRIME - 1, -1):
        tampered = limbs.copy()
        tampered[0, 3] = bad
        with pytest.raises(InvalidShare):
            limbs_to_secrets(tampered)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_secrets_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ParameterError):
        split([bytes(size)], n=3, t=2, rng=DeterministicRandomSource(0))


@pytest.mark.parametrize(("n", "t"), [(3, 0), (3, 4), (0, 0), (1, 2), (65537, 2)])
def test_bad_parameters(n: int, t: int) -> None:
    with pytest.raises(ParameterError):
        split([SECRET], n=n, t=t, rng=DeterministicRandomSource(0))


@pytest.mark.parametrize(
    "xs",
    [
        [1, 1, 2],  # duplicate among the first t
        [1, 2, 1],  # duplicate between the first t and the extra share
        [2, 3, 4, 3],  # duplicate among the extra shares
        [3, 3],
    ],
)
@pytest.mark.parametrize("verify_extra", [True, False])
def test_duplicate_index_is_invalid(xs: list[int], verify_extra: bool) -> None:
    shares = shares_of([SECRET], n=4, t=2)
    with pytest.raises(InvalidShare, match="duplicate"):
        reconstruct(xs, shares[[x - 1 for x in xs]], t=2, verify_extra=verify_extra)


@pytest.mark.parametrize("bad", [0, -1, PRIME, PRIME + 1])
def test_index_out_of_range_is_invalid(bad: int) -> None:
    shares = shares_of([SECRET], n=3, t=2)
    with pytest.raises(InvalidShare):
        reconstruct([1, bad], shares[:2], t=2)
    with pytest.raises(InvalidShare):
        lagrange_at_zero([bad, 2])


def test_too_few_shares() -> None:
    shares = shares_of([SECRET], n=5, t=3)
    with pytest.raises(InvalidShare):
        reconstruct([1, 2], shares[:2], t=3)
    with pytest.raises(InvalidShare):
        reconstruct([1, 2, 3], shares[:2], t=3)  # indices and shares disagree in count
    with pytest.raises(InvalidShare):
        reconstruct([], shares[:0], t=0)


def test_share_values_out_of_range_are_invalid() -> None:
    shares = shares_of([SECRET], n=3, t=2)
    tampered = shares.copy()
    tampered[0, 0, 5] = PRIME
    with pytest.raises(InvalidShare):
        reconstruct([1, 2], tampered[:2], t=2)


def test_reconstruct_with_checks_shape() -> None:
    shares = shares_of([SECRET], n=3, t=2)
    coefficients = lagrange_at_zero([1, 2])
    assert reconstruct_with(coefficients, shares[:2]) == [SECRET]
    with pytest.raises(InvalidShare):
        reconstruct_with(coefficients, shares[:3])
    with pytest.raises(InvalidShare):
        reconstruct_with(coefficients, shares[:2, :, :8])
    with pytest.raises(InvalidShare):
        reconstruct_with(coefficients, shares[:2, 0])


def test_share_bytes_round_trip() -> None:
    shares = shares_of([SECRET, bytes(32)], n=3, t=2)
    for i in range(3):
        for j in range(2):
            raw = shares_to_bytes(shares[i, j])
            assert len(raw) == SHARE_BYTES
            parsed = share_from_bytes(raw)
            assert parsed.dtype == np.uint32
            assert np.array_equal(parsed, shares[i, j])


@pytest.mark.parametrize("size", [0, 1, SHARE_BYTES - 1, SHARE_BYTES + 1, 2 * SHARE_BYTES])
def test_share_from_bytes_wrong_length(size: int) -> None:
    with pytest.raises(InvalidShare):
        share_from_bytes(bytes(size))


@pytest.mark.parametrize("value", [PRIME, PRIME + 1, 2**31, 2**32 - 1])
@pytest.mark.parametrize("limb", [0, 7, LIMBS - 1])
def test_share_from_bytes_limb_out_of_range(value: int, limb: int) -> None:
    raw = bytearray(shares_to_bytes(shares_of([SECRET], n=2, t=2)[0, 0]))
    raw[4 * limb : 4 * limb + 4] = value.to_bytes(4, "little")
    with pytest.raises(InvalidShare):
        share_from_bytes(bytes(raw))
    raw[4 * limb : 4 * limb + 4] = (PRIME - 1).to_bytes(4, "little")
    assert int(share_from_bytes(bytes(raw))[limb]) == PRIME - 1  # largest valid value


def test_shares_to_bytes_wrong_shape() -> None:
    with pytest.raises(ParameterError):
        shares_to_bytes(np.zeros(LIMBS + 1, dtype=np.uint32))
    with pytest.raises(ParameterError):
        shares_to_bytes(np.zeros((1, LIMBS), dtype=np.uint32))


def test_split_uses_the_rng() -> None:
    """Different rng streams give different shares of one secret (t > 1)."""
    a = shares_of([SECRET], n=3, t=2, seed=1)
    b = shares_of([SECRET], n=3, t=2, seed=2)
    assert not np.array_equal(a, b)
    assert np.array_equal(a, shares_of([SECRET], n=3, t=2, seed=1))


def test_many_secrets_at_once() -> None:
    secrets = [hashlib.sha256(bytes([i])).digest() for i in range(50)]
    shares = shares_of(secrets, n=7, t=4)
    assert shares.shape == (7, 50, LIMBS)
    assert int(shares.max()) < PRIME
    assert reconstruct([7, 2, 5, 1, 3], shares[[6, 1, 4, 0, 2]], t=4) == secrets
