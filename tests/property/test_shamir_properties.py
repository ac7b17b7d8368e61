"""Shamir t-of-n properties (T02): reconstruction, secrecy of t−1 shares, tamper detection."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import InvalidShare
from secagg.primitives.shamir import (
    LIMBS,
    PRIME,
    limbs_to_secrets,
    reconstruct,
    secrets_to_limbs,
    split,
)
from secagg.rng import DeterministicRandomSource

secret_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=3)


@st.composite
def sharings(draw: st.DrawFn, max_n: int = 10) -> tuple[int, int, list[bytes], np.ndarray]:
    """(n, t, secrets, shares) with n in [1, max_n], t in [1, n]."""
    n = draw(st.integers(1, max_n), label="n")
    t = draw(st.integers(1, n), label="t")
    secrets = draw(secret_lists, label="secrets")
    seed = draw(st.integers(0, 2**32), label="rng_seed")
    return n, t, secrets, split(secrets, n=n, t=t, rng=DeterministicRandomSource(seed))


def subset(shares: np.ndarray, xs: Sequence[int]) -> np.ndarray:
    """The shares held by indices ``xs`` (1-based), in that order."""
    return shares[[x - 1 for x in xs]]


def caller_accepts(
    xs: Sequence[int], shares: np.ndarray, t: int, commitments: Sequence[bytes]
) -> bool:
    """Model of the protocol's check after reconstruction.

    The owner of each secret published (and signed) SHA-256 of it; whoever
    reconstructs rebuilds the secrets and compares against those
    commitments. A malformed share (``InvalidShare``) or any mismatch means
    "tampered". No exception escapes: the answer is True or False.
    """
    try:
        rebuilt = reconstruct(xs, shares, t=t)
    except InvalidShare:
        return False
    return [hashlib.sha256(s).digest() for s in rebuilt] == list(commitments)


def lagrange_eval(points: Sequence[tuple[int, int]], z: int) -> int:
    """f(z) for the unique polynomial of degree < len(points) through ``points`` (mod p).

    Plain python integers: an independent reference for the library's arithmetic.
    """
    total = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                num = num * (z - xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, PRIME - 2, PRIME)) % PRIME
    return total


@given(sharing=sharings(), data=st.data())
def test_sampled_subsets_reconstruct(
    sharing: tuple[int, int, list[bytes], np.ndarray], data: st.DataObject
) -> None:
    """Any ≥ t shares, in any order, rebuild every secret exactly (extras verified)."""
    n, t, secrets, shares = sharing
    order = data.draw(st.permutations(range(1, n + 1)), label="order")
    k = data.draw(st.integers(t, n), label="k")
    xs = list(order[:k])
    assert reconstruct(xs, subset(shares, xs), t=t) == secrets
    assert reconstruct(xs, subset(shares, xs), t=t, verify_extra=False) == secrets


@given(sharing=sharings(max_n=6))
def test_every_subset_reconstructs_exhaustively(
    sharing: tuple[int, int, list[bytes], np.ndarray],
) -> None:
    """n ≤ 6: every subset of size ≥ t (all t-subsets included) rebuilds the secrets."""
    n, t, secrets, shares = sharing
    for k in range(t, n + 1):
        for xs in itertools.combinations(range(1, n + 1), k):
            assert reconstruct(list(xs), subset(shares, xs), t=t) == secrets


@given(sharing=sharings())
def test_shares_match_an_independent_interpolation(
    sharing: tuple[int, int, list[bytes], np.ndarray],
) -> None:
    """Every share lies on the degree < t polynomial through the first t shares and
    the secret at 0, computed with plain python integers."""
    n, t, secrets, shares = sharing
    limbs = secrets_to_limbs(secrets)
    assert shares.shape == (n, len(secrets), LIMBS)
    assert int(shares.max()) < PRIME
    for j in range(len(secrets)):
        for limb in range(LIMBS):
            points = [(0, int(limbs[j, limb]))]
            points += [(x, int(shares[x - 1, j, limb])) for x in range(1, t)]
            for x in range(t, n + 1):
                assert lagrange_eval(points, x) == int(shares[x - 1, j, limb])


@given(sharing=sharings(), data=st.data())
def test_fewer_than_t_shares_are_refused(
    sharing: tuple[int, int, list[bytes], np.ndarray], data: st.DataObject
) -> None:
    n, t, _, shares = sharing
    k = data.draw(st.integers(0, t - 1), label="k")
    xs = data.draw(st.permutations(range(1, n + 1)), label="order")[:k]
    with pytest.raises(InvalidShare):
        reconstruct(list(xs), subset(shares, xs), t=t)


@given(
    sharing=sharings().filter(lambda s: s[1] >= 2),
    candidates=secret_lists,
    data=st.data(),
)
def test_t_minus_1_shares_are_consistent_with_every_secret(
    sharing: tuple[int, int, list[bytes], np.ndarray],
    candidates: list[bytes],
    data: st.DataObject,
) -> None:
    """t−1 shares say nothing about the secret (perfect secrecy, limb by limb).

    For ANY t−1 shares and ANY candidate secret s′ there is a polynomial of
    degree < t with f(0) = s′ through those shares: interpolate (0, s′) and
    the t−1 points. We build it, complete it to a full sharing (the
    remaining holders' shares), and check that the library accepts it as a
    valid sharing of s′: reconstruct with ``verify_extra`` from the real
    t−1 shares plus the forged ones returns s′. So every secret is equally
    consistent with what t−1 holders see; only a t-th share decides.
    """
    n, t, secrets, shares = sharing
    m = len(secrets)
    forged_secrets = (candidates * m)[:m]
    order = data.draw(st.permutations(range(1, n + 1)), label="order")
    seen, rest = list(order[: t - 1]), list(order[t - 1 :])
    forged = np.zeros((len(rest), m, LIMBS), dtype=np.uint32)
    target = secrets_to_limbs(forged_secrets)
    for j in range(m):
        for limb in range(LIMBS):
            points = [(0, int(target[j, limb]))]
            points += [(x, int(shares[x - 1, j, limb])) for x in seen]
            for r, x in enumerate(rest):
                forged[r, j, limb] = lagrange_eval(points, x)
    xs = seen + rest
    combined = np.concatenate([subset(shares, seen), forged])
    assert reconstruct(xs, combined, t=t) == forged_secrets
    # ... while the true shares of those same holders give the true secret.
    assert reconstruct(xs, subset(shares, xs), t=t) == secrets


@given(sharing=sharings().filter(lambda s: s[1] >= 2), data=st.data())
def test_t_minus_1_shares_at_threshold_t_minus_1_do_not_give_the_secret(
    sharing: tuple[int, int, list[bytes], np.ndarray], data: st.DataObject
) -> None:
    """Treating t−1 shares as a (t−1)-threshold sharing interpolates a different
    polynomial: the result is not the secret (except with probability p^-16)."""
    n, t, secrets, shares = sharing
    xs = list(data.draw(st.permutations(range(1, n + 1)), label="order")[: t - 1])
    try:
        wrong = reconstruct(xs, subset(shares, xs), t=t - 1)
    except InvalidShare:
        return  # a limb ≥ 2^16: certainly not the secret
    assert all(w != s for w, s in zip(wrong, secrets, strict=True))


@st.composite
def tampering(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    """(position, secret, limb, delta, seed): which share value to change, and by how much."""
    return (
        draw(st.integers(0, 10**6), label="position"),
        draw(st.integers(0, 10**6), label="secret"),
        draw(st.integers(0, LIMBS - 1), label="limb"),
        draw(st.integers(1, PRIME - 1), label="delta"),
        draw(st.integers(0, 2**32), label="rng_seed"),
    )


def tamper(shares: np.ndarray, where: tuple[int, int, int, int, int]) -> np.ndarray:
    """A copy of ``shares`` with one share value changed to another field element."""
    position, secret, limb, delta, _ = where
    out = shares.copy()
    i, j = position % out.shape[0], secret % out.shape[1]
    out[i, j, limb] = (int(out[i, j, limb]) + delta) % PRIME
    assert out[i, j, limb] != shares[i, j, limb]
    return out


@given(sharing=sharings().filter(lambda s: s[1] < s[0]), where=tampering(), data=st.data())
def test_tampered_share_with_extras_is_detected(
    sharing: tuple[int, int, list[bytes], np.ndarray],
    where: tuple[int, int, int, int, int],
    data: st.DataObject,
) -> None:
    """With k > t shares, changing any single one (base or extra) raises InvalidShare.

    A changed base share moves the interpolated polynomial by δ·ℓ_i(x), and
    ℓ_i is non-zero at every extra index; a changed extra share is off the
    polynomial. Either way ``verify_extra`` sees it.
    """
    n, t, _, shares = sharing
    k = data.draw(st.integers(t + 1, n), label="k")
    xs = list(data.draw(st.permutations(range(1, n + 1)), label="order")[:k])
    held = tamper(subset(shares, xs), where)
    with pytest.raises(InvalidShare):
        reconstruct(xs, held, t=t)


@given(sharing=sharings(), where=tampering(), data=st.data())
def test_tampered_share_at_threshold_fails_the_commitment_check(
    sharing: tuple[int, int, list[bytes], np.ndarray],
    where: tuple[int, int, int, int, int],
    data: st.DataObject,
) -> None:
    """With exactly t shares nothing is redundant: reconstruction yields a wrong
    secret (or a limb out of range), and the caller's commitment check catches it.

    The Lagrange coefficient of every share at 0 is non-zero, so a changed
    share always changes the rebuilt limb.
    """
    n, t, secrets, shares = sharing
    commitments = [hashlib.sha256(s).digest() for s in secrets]
    xs = list(data.draw(st.permutations(range(1, n + 1)), label="order")[:t])
    held = subset(shares, xs)
    assert caller_accepts(xs, held, t, commitments)
    assert not caller_accepts(xs, tamper(held, where), t, commitments)


@given(sharing=sharings().filter(lambda s: s[0] >= 2), data=st.data())
def test_duplicate_index_is_refused(
    sharing: tuple[int, int, list[bytes], np.ndarray], data: st.DataObject
) -> None:
    """Repeating any index anywhere in the list raises InvalidShare."""
    n, t, _, shares = sharing
    k = data.draw(st.integers(max(t, 2), n), label="k")
    xs = list(data.draw(st.permutations(range(1, n + 1)), label="order")[:k])
    i = data.draw(st.integers(0, k - 1), label="copy_from")
    j = data.draw(st.integers(0, k - 1).filter(lambda j: j != i), label="copy_to")
    xs[j] = xs[i]
    for verify_extra in (True, False):
        with pytest.raises(InvalidShare):
            reconstruct(xs, subset(shares, xs), t=t, verify_extra=verify_extra)


@given(limbs=st.lists(st.integers(0, PRIME - 1), min_size=LIMBS, max_size=LIMBS))
def test_limbs_above_16_bits_are_refused(limbs: list[int]) -> None:
    array = np.array([limbs], dtype=np.int64)
    if max(limbs) >= 1 << 16:
        with pytest.raises(InvalidShare):
            limbs_to_secrets(array)
    else:
        assert secrets_to_limbs(limbs_to_secrets(array)).tolist() == [limbs]
