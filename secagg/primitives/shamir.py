"""Shamir t-of-n sharing of 32-byte secrets, vectorised over many secrets.

Construction: a secret is split into 16 limbs of 16 bits; each limb is an
element of GF(p) with p = 65537 (the Fermat prime F4, > 2^16) and is shared
with its own independent random polynomial of degree t−1. Holder ``i`` gets
the evaluations at x = i (1-based). Any t shares reconstruct every limb by
Lagrange interpolation at 0; t−1 shares are independent of the secret
(perfect secrecy, limb by limb).

Why this field: every product of two elements is < 2^34, so a dot product of
up to 2^19 terms is an exact integer in float64. Splitting (a Vandermonde
product) and reconstruction (one row of Lagrange coefficients times the share
matrix) are therefore single BLAS matrix products, and the coefficients are
computed once per survivor set and reused for every secret.

Tampering. Plain Shamir does not authenticate shares: a modified share yields
a *wrong* secret without error. Callers must check each reconstructed secret:
an X25519 mask key against the signed public key the owner advertised, a
self-mask seed against the owner's signed hash commitment. Given more than t
shares, :func:`reconstruct` also checks that the extra ones lie on the same
polynomial (``verify_extra``), and any limb outside 16 bits is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from secagg.errors import InvalidShare, ParameterError
from secagg.rng import RandomSource, uniform_below

PRIME = 65537
SECRET_BYTES = 32
LIMBS = 16  # 16-bit limbs per 32-byte secret
SHARE_BYTES = LIMBS * 4  # one share of one secret on the wire: 16 little-endian uint32
MAX_SHARES = PRIME - 1
_MAX_EXACT_TERMS = 1 << 19  # keeps float64 dot products exact


def _check_params(n: int, t: int) -> None:
    if not 1 <= t <= n:
        raise ParameterError(f"need 1 <= t <= n, got t={t}, n={n}")
    if n > MAX_SHARES:
        raise ParameterError(f"at most {MAX_SHARES} shares")
    if t > _MAX_EXACT_TERMS:
        raise ParameterError("threshold too large for exact arithmetic")


def secrets_to_limbs(secrets: Sequence[bytes]) -> np.ndarray:
    """(m, 16) int64 limbs of m 32-byte secrets."""
    for s in secrets:
        if len(s) != SECRET_BYTES:
            raise ParameterError("Shamir secrets must be 32 bytes")
    raw = np.frombuffer(b"".join(secrets), dtype="<u2").reshape(len(secrets), LIMBS)
    return raw.astype(np.int64)


def limbs_to_secrets(limbs: np.ndarray) -> list[bytes]:
    """Inverse of :func:`secrets_to_limbs`; raises if a limb is not 16-bit."""
    if limbs.size and (limbs.min() < 0 or limbs.max() >= 1 << 16):
        raise InvalidShare()
    raw = limbs.astype("<u2").tobytes()
    return [raw[i : i + SECRET_BYTES] for i in range(0, len(raw), SECRET_BYTES)]


def _vandermonde(xs: np.ndarray, t: int) -> np.ndarray:
    """(len(xs), t) matrix of x^j mod p, as float64 (exact)."""
    out = np.empty((xs.size, t), dtype=np.int64)
    out[:, 0] = 1
    for j in range(1, t):
        out[:, j] = out[:, j - 1] * xs % PRIME
    return out.astype(np.float64)


def split(secrets: Sequence[bytes], *, n: int, t: int, rng: RandomSource) -> np.ndarray:
    """Share each secret t-of-n.

    Returns a uint32 array of shape (n, m, 16): ``shares[i, j]`` is holder
    ``i``'s share (at x = i + 1) of secret ``j``.
    """
    _check_params(n, t)
    return split_at(secrets, xs=range(1, n + 1), t=t, rng=rng)


def split_at(
    secrets: Sequence[bytes], *, xs: Sequence[int], t: int, rng: RandomSource
) -> np.ndarray:
    """Share each secret t-of-len(xs), evaluating at the given distinct indices.

    Used when holders are a subset of a cohort (dropouts, SecAgg+ graphs)
    and keep their cohort-wide index. Returns (len(xs), m, 16) uint32.
    """
    x = _check_indices(xs)
    _check_params(x.size, t)
    m = len(secrets)
    coeffs = np.empty((t, m * LIMBS), dtype=np.int64)
    coeffs[0] = secrets_to_limbs(secrets).reshape(-1)
    if t > 1:
        coeffs[1:] = uniform_below(rng, PRIME, (t - 1) * m * LIMBS).reshape(t - 1, -1)
    values = _vandermonde(x, t) @ coeffs.astype(np.float64)
    shares: np.ndarray = np.fmod(values, PRIME).astype(np.uint32)
    return shares.reshape(x.size, m, LIMBS)


def _inverse(values: np.ndarray) -> np.ndarray:
    """Elementwise inverse mod p (Fermat), vectorised."""
    result = np.ones_like(values)
    base = values % PRIME
    exp = PRIME - 2
    while exp:
        if exp & 1:
            result = result * base % PRIME
        base = base * base % PRIME
        exp >>= 1
    return result


def _check_indices(xs: Sequence[int]) -> np.ndarray:
    x = np.asarray(xs, dtype=np.int64)
    if x.ndim != 1 or x.size == 0:
        raise InvalidShare("need at least one share")
    if x.min() < 1 or x.max() >= PRIME:
        raise InvalidShare("share index out of range")
    if np.unique(x).size != x.size:
        raise InvalidShare("duplicate share index")
    return x


def lagrange_basis(xs: Sequence[int], points: Sequence[int]) -> np.ndarray:
    """(len(points), t) matrix L with f(z_e) = Σ_i L[e, i] f(x_i) mod p.

    Barycentric form: L[e, i] = ℓ(z_e) · w_i / (z_e − x_i) with
    ℓ(z) = Π_j (z − x_j) and w_i = 1 / Π_{j≠i} (x_i − x_j); O(t²) once,
    then O(t) per point. ``points`` must not be share indices.
    """
    x = _check_indices(xs)
    z = np.asarray(points, dtype=np.int64) % PRIME
    if np.isin(z, x).any():
        raise ParameterError("evaluation point coincides with a share index")
    denominator = np.ones(x.size, dtype=np.int64)
    ell = np.ones(z.size, dtype=np.int64)
    for j in range(x.size):
        diff = (x - x[j]) % PRIME
        diff[j] = 1
        denominator = denominator * diff % PRIME
        ell = ell * ((z - x[j]) % PRIME) % PRIME
    weights = _inverse(denominator)
    inv_gap = _inverse((z[:, None] - x[None, :]) % PRIME)
    basis: np.ndarray = ell[:, None] * weights[None, :] % PRIME * inv_gap % PRIME
    return basis


def lagrange_at_zero(xs: Sequence[int]) -> np.ndarray:
    """λ with f(0) = Σ λ_i f(x_i) mod p, for distinct xs in [1, p−1].

    Compute once per survivor set and pass to :func:`reconstruct_with`.
    """
    row: np.ndarray = lagrange_basis(xs, [0])[0]
    return row


def reconstruct_with(coefficients: np.ndarray, shares: np.ndarray) -> list[bytes]:
    """Reconstruct m secrets from (t, m, 16) shares and precomputed λ (t,)."""
    if shares.ndim != 3 or shares.shape[2] != LIMBS or shares.shape[0] != coefficients.size:
        raise InvalidShare("share array has the wrong shape")
    if shares.size and int(shares.max()) >= PRIME:
        raise InvalidShare("share value out of range")
    t, m, _ = shares.shape
    flat = shares.reshape(t, m * LIMBS).astype(np.float64)
    values = coefficients.astype(np.float64) @ flat
    limbs = np.fmod(values, PRIME).astype(np.int64).reshape(m, LIMBS)
    return limbs_to_secrets(limbs)


def reconstruct(
    xs: Sequence[int], shares: np.ndarray, *, t: int, verify_extra: bool = True
) -> list[bytes]:
    """Reconstruct m secrets from k ≥ t shares each: ``shares`` is (k, m, 16).

    Uses the first t shares. With ``verify_extra`` the remaining k − t shares
    must lie on the same polynomials, else :class:`InvalidShare`.
    """
    k = len(xs)
    if k < t or shares.shape[0] != k:
        raise InvalidShare("not enough shares")
    _check_indices(xs)  # all k: a duplicate across the first t and the extras is InvalidShare too
    secrets = reconstruct_with(lagrange_at_zero(xs[:t]), shares[:t])
    if verify_extra and k > t:
        _verify_on_polynomial(xs, shares, t)
    return secrets


def _verify_on_polynomial(xs: Sequence[int], shares: np.ndarray, t: int) -> None:
    """Check shares t..k−1 against the polynomials through the first t shares."""
    flat = shares.reshape(shares.shape[0], -1)
    basis = lagrange_basis(xs[:t], xs[t:]).astype(np.float64)
    predicted = np.fmod(basis @ flat[:t].astype(np.float64), PRIME)
    if not np.array_equal(predicted.astype(np.int64), flat[t:].astype(np.int64)):
        raise InvalidShare()


def shares_to_bytes(share: np.ndarray) -> bytes:
    """One holder's share of one secret (16 limbs) as 64 bytes."""
    if share.shape != (LIMBS,):
        raise ParameterError("a share has 16 limbs")
    return share.astype("<u4").tobytes()


def share_from_bytes(raw: bytes) -> np.ndarray:
    """Inverse of :func:`shares_to_bytes`, with range checks."""
    if len(raw) != SHARE_BYTES:
        raise InvalidShare("share has the wrong length")
    share = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
    if int(share.max()) >= PRIME:
        raise InvalidShare("share value out of range")
    return share
