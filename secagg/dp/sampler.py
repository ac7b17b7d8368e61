"""Exact discrete Gaussian sampling on a CSPRNG, with integers only.

Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
Privacy" (NeurIPS 2020), Algorithms 1–3: Bernoulli(exp(−γ)) for rational γ
from Bernoulli(a/b) coins, a discrete Laplace by rejection, and the discrete
Gaussian N_Z(0, σ²) by rejection from that Laplace. Every coin is an exact
uniform integer drawn from a :class:`~secagg.rng.RandomSource`; σ² is a
:class:`~fractions.Fraction` (or int) and nothing on the sampling path is a
float, so the output distribution is exactly the one the privacy analysis
assumes (no floating-point pitfalls such as Mironov's attack on the Laplace
mechanism). A test checks this module's syntax tree for float operations.

Two implementations of the same algorithms:

- the scalar functions (:func:`bernoulli_exp`, :func:`discrete_laplace`,
  :func:`discrete_gaussian_one`) use Python integers and Fractions; they are
  the readable reference and handle any parameter size;
- :func:`discrete_gaussian` runs them on numpy ``int64``/``uint64`` arrays,
  candidates in batches, about 100× faster. Every product is kept below 2^64
  by checks; a candidate whose numbers would not fit (astronomically rare
  tails) is finished by the scalar path, and a σ² whose Bernoulli
  denominators would not fit goes wholly to the scalar path, so the result is
  exact either way.
"""

from __future__ import annotations

from fractions import Fraction
from math import isqrt

import numpy as np

from secagg.errors import ParameterError
from secagg.rng import RandomSource

__all__ = [
    "bernoulli",
    "bernoulli_exp",
    "discrete_gaussian",
    "discrete_gaussian_one",
    "discrete_laplace",
    "uniform_below",
    "uniform_int",
]

#: Largest |a| whose square fits uint64 (the Gaussian step squares a = |y|·q·t − p).
_A_MAX = (1 << 32) - 1
#: The vectorised path needs den·k ≤ 2^64 for loop counters k up to this.
_K_RESERVE = 1 << 8
#: Candidates drawn per batch of the vectorised sampler.
BATCH = 1 << 16


# ----------------------------------------------------------------- uniform integers


def uniform_int(rng: RandomSource, bound: int) -> int:
    """One integer uniform on [0, bound), any size (rejection on bit-masked bytes)."""
    if bound < 1:
        raise ParameterError("bound must be positive")
    if bound == 1:
        return 0
    bits = (bound - 1).bit_length()
    nbytes = (bits + 7) // 8
    excess = nbytes * 8 - bits
    while True:
        word = int.from_bytes(rng.random_bytes(nbytes), "little") >> excess
        if word < bound:
            return word


def _words(rng: RandomSource, n: int) -> np.ndarray:
    """``n`` uniform 64-bit words."""
    return np.frombuffer(rng.random_bytes(8 * n), dtype="<u8")


def _words_of(rng: RandomSource, n: int, bits: int) -> np.ndarray:
    """``n`` uniform words of 32 or 64 bits."""
    if bits == 32:
        return np.frombuffer(rng.random_bytes(4 * n), dtype="<u4")
    return _words(rng, n)


def _below(rng: RandomSource, n: int, bound: int, accept: np.ndarray | None) -> np.ndarray:
    """Bernoulli(accept/bound) per element, or with ``accept=None`` uniform on [0, bound).

    A 64-bit word w below L = m·bound (m = ⌊2^64/bound⌋; others are drawn
    again) gives u = ⌊w/m⌋ uniform on [0, bound), and u < a exactly when
    w < a·m, so a Bernoulli(a/bound) coin costs one comparison, no division.
    """
    if bound == 1:  # u = 0: no randomness needed
        return np.zeros(n, dtype=np.uint64) if accept is None else accept > 0
    m = (1 << 64) // bound
    limit = m * bound
    out = np.empty(n, dtype=bool if accept is not None else np.uint64)
    todo = np.arange(n)
    while todo.size:
        w = _words(rng, todo.size)
        ok = None if limit == 1 << 64 else w < np.uint64(limit)
        if ok is not None and not ok.all():
            idx, w, keep = todo[ok], w[ok], todo[~ok]
        else:
            idx, keep = todo, todo[:0]
        if accept is None:
            out[idx] = w // np.uint64(m)
        else:
            out[idx] = w < accept[idx] * np.uint64(m)  # accept ≤ bound, so no overflow
        todo = keep
    return out


def uniform_below(rng: RandomSource, bound: int, n: int) -> np.ndarray:
    """``n`` integers uniform on [0, bound) as uint64, exactly; bound in [1, 2^64]."""
    if not 1 <= bound <= 1 << 64:
        raise ParameterError("bound must be in [1, 2**64]")
    return _below(rng, n, bound, None)


def _coins(rng: RandomSource, n: int) -> np.ndarray:
    """``n`` fair bits as a bool array."""
    raw = np.frombuffer(rng.random_bytes((n + 7) // 8), dtype=np.uint8)
    bits: np.ndarray = np.unpackbits(raw)[:n].astype(bool)
    return bits


# ----------------------------------------------------------------- scalar reference


def bernoulli(rng: RandomSource, p: Fraction) -> bool:
    """True with probability p ∈ [0, 1] exactly."""
    if not 0 <= p <= 1:
        raise ParameterError("p must be in [0, 1]")
    return uniform_int(rng, p.denominator) < p.numerator


def bernoulli_exp(rng: RandomSource, gamma: Fraction) -> bool:
    """True with probability exp(−γ) for rational γ ≥ 0 (CKS20 Algorithm 1).

    For γ ≤ 1: draw A_k ~ Bernoulli(γ/k) for k = 1, 2, … until one fails;
    the index K of the failure is odd with probability Σ_j (−γ)^j / j! = e^−γ.
    For γ > 1: ⌊γ⌋ independent Bernoulli(e^−1) must all succeed first.
    """
    gamma = Fraction(gamma)
    if gamma < 0:
        raise ParameterError("gamma must be non-negative")
    while gamma > 1:
        if not bernoulli_exp(rng, Fraction(1)):
            return False
        gamma -= 1
    k = 1
    while bernoulli(rng, Fraction(gamma.numerator, gamma.denominator * k)):  # γ/k
        k += 1
    return k % 2 == 1


def _geometric_e(rng: RandomSource) -> int:
    """Count of Bernoulli(e^−1) successes before the first failure: P(V ≥ v) = e^−v."""
    v = 0
    while bernoulli_exp(rng, Fraction(1)):
        v += 1
    return v


def discrete_laplace(rng: RandomSource, s: int, t: int) -> int:
    """One sample with P(y) ∝ exp(−|y|·s/t) for positive integers s, t (CKS20 Algorithm 2)."""
    if s < 1 or t < 1:
        raise ParameterError("s and t must be positive integers")
    while True:
        u = uniform_int(rng, t)
        if not bernoulli_exp(rng, Fraction(u, t)):
            continue
        x = u + t * _geometric_e(rng)  # P(x) ∝ e^{−x/t}
        y = x // s
        negative = uniform_int(rng, 2) == 1
        if negative and y == 0:
            continue  # zero would otherwise be counted twice
        return -y if negative else y


def _check_sigma2(sigma2: Fraction | int) -> Fraction:
    if not isinstance(sigma2, int | Fraction) or isinstance(sigma2, bool):
        raise ParameterError("sigma2 must be an int or a Fraction: no floats on the sampling path")
    value = Fraction(sigma2)
    if value <= 0:
        raise ParameterError("sigma2 must be positive")
    return value


def _accept(rng: RandomSource, y: int, sigma2: Fraction, t: int) -> bool:
    """The Gaussian rejection step: Bernoulli(exp(−(|y| − σ²/t)² / (2σ²))).

    With σ² = p/q that exponent is (|y|·q·t − p)² / (2·p·q·t²).
    """
    p, q = sigma2.numerator, sigma2.denominator
    a = abs(y) * q * t - p
    return bernoulli_exp(rng, Fraction(a * a, 2 * p * q * t * t))


def discrete_gaussian_one(rng: RandomSource, sigma2: Fraction | int) -> int:
    """One sample of N_Z(0, σ²): P(y) ∝ exp(−y²/(2σ²)) (CKS20 Algorithm 3)."""
    s2 = _check_sigma2(sigma2)
    t = isqrt(s2.numerator // s2.denominator) + 1  # ⌊σ⌋ + 1, in integers
    while True:
        y = discrete_laplace(rng, 1, t)
        if _accept(rng, y, s2, t):
            return y


# ----------------------------------------------------------------- vectorised


def _coin_matrix(rng: RandomSource, num: np.ndarray, den: int, k0: int, width: int) -> np.ndarray:
    """Column j holds Bernoulli(num/(den·(k0+j))) per element: the coins of Algorithm 1.

    Same trick as :func:`_below`, one word per coin: w < a·m for w below
    L = m·b; the rare words at or above L are drawn again. A column with
    b = 1 (den = 1, k = 1) is certain and draws nothing.
    """
    coins = np.empty((num.size, width), dtype=bool)
    first = 0
    if den * k0 == 1:
        coins[:, 0] = num > 0
        first = 1
    cols = width - first
    if cols == 0:
        return coins
    bounds = [den * (k0 + j) for j in range(first, width)]
    # 32-bit words while every bound is below 2^20 (rejection ≤ 2^−12 per word), else 64.
    bits = 32 if bounds[-1] < 1 << 20 else 64
    dtype = np.uint32 if bits == 32 else np.uint64
    ms = [(1 << bits) // b for b in bounds]
    limits = [m * b for m, b in zip(ms, bounds, strict=True)]
    m_w = np.array(ms, dtype=dtype)
    # L = 2^bits (b a power of two) rejects nothing; 0 stands for it below.
    lim_w = np.array([0 if lim == 1 << bits else lim for lim in limits], dtype=dtype)
    rejects = lim_w != 0
    w = _words_of(rng, num.size * cols, bits).reshape(num.size, cols).copy()
    bad = rejects[None, :] & (w >= lim_w[None, :])
    while bad.any():
        rows, idx = np.nonzero(bad)
        w[rows, idx] = _words_of(rng, rows.size, bits)
        bad[rows, idx] = w[rows, idx] >= lim_w[idx]
    # num ≤ den, so num·m ≤ L < 2^bits
    num_w: np.ndarray = num.astype(dtype)
    coins[:, first:] = w < num_w[:, None] * m_w[None, :]
    return coins


#: Coins drawn per element and loop pass in Algorithm 1 (P(K > 4) ≤ 1/4! for γ ≤ 1).
_WIDTH = 4


def _bernoulli_exp_le1(rng: RandomSource, num: np.ndarray, den: int) -> np.ndarray:
    """Bernoulli(exp(−num/den)) per element of uint64 ``num`` ≤ den (Algorithm 1 on arrays).

    Draws the coins Bernoulli(γ/k) for k = 1…8 of every element at once and
    finds the first failure K; the few elements with no failure yet go on
    with k = 9…16, and so on. An element still running when den·k would pass
    2^64 (probability ≤ 1/(k−1)!: never in practice) finishes on Python
    integers.
    """
    n = num.size
    result = np.zeros(n, dtype=bool)
    active = np.arange(n)
    k = 1
    while active.size:
        if den * (k + _WIDTH) > 1 << 64:
            for i in active:
                kk = k
                while bernoulli(rng, Fraction(int(num[i]), den * kk)):  # γ/k
                    kk += 1
                result[i] = kk % 2 == 1
            break
        failed = ~_coin_matrix(rng, num[active], den, k, _WIDTH)
        stopped = failed.any(axis=1)
        first = failed.argmax(axis=1)[stopped]  # K = k + first
        result[active[stopped]] = (first + k) % 2 == 1
        active = active[~stopped]
        k += _WIDTH
    return result


def _bernoulli_exp(rng: RandomSource, num: np.ndarray, den: int) -> np.ndarray:
    """Bernoulli(exp(−num/den)) per element of uint64 ``num`` (any size)."""
    whole = num // np.uint64(den)
    frac = num - whole * np.uint64(den)
    alive = np.ones(num.size, dtype=bool)
    idx = np.flatnonzero(whole > 0)
    step = 0
    while idx.size:  # ⌊γ⌋ Bernoulli(e^−1) must all succeed
        ok = _bernoulli_exp_le1(rng, np.ones(idx.size, dtype=np.uint64), 1)
        alive[idx[~ok]] = False
        step += 1
        idx = idx[ok]
        idx = idx[whole[idx] > step]
    idx = np.flatnonzero(alive)
    alive[idx] = _bernoulli_exp_le1(rng, frac[idx], den)
    return alive


def _geometric_e_vec(rng: RandomSource, n: int) -> np.ndarray:
    """``n`` draws of :func:`_geometric_e` (int64), eight Bernoulli(e^−1) per pass."""
    v = np.zeros(n, dtype=np.int64)
    active = np.arange(n)
    while active.size:
        ones = np.ones(active.size * _WIDTH, dtype=np.uint64)
        failed = ~_bernoulli_exp_le1(rng, ones, 1).reshape(active.size, _WIDTH)
        stopped = failed.any(axis=1)
        v[active] += np.where(stopped, failed.argmax(axis=1), _WIDTH)
        active = active[~stopped]
    return v


def _laplace_candidates(rng: RandomSource, t: int, n: int) -> np.ndarray:
    """Up to ``n`` discrete Laplace samples with scale t (s = 1), rejected ones left out."""
    u = uniform_below(rng, t, n)
    u = u[_bernoulli_exp_le1(rng, u, t)]
    x = u.astype(np.int64) + np.int64(t) * _geometric_e_vec(rng, u.size)
    negative = _coins(rng, u.size)
    keep = ~(negative & (x == 0))
    y: np.ndarray = np.where(negative, -x, x)[keep]
    return y


def _vector_fits(s2: Fraction, t: int) -> bool:
    """Whether the vectorised path's numbers fit 64 bits for this σ²."""
    den = 2 * s2.numerator * s2.denominator * t * t
    return den * _K_RESERVE <= 1 << 64 and s2.denominator * t < 1 << 31


def discrete_gaussian(rng: RandomSource, sigma2: Fraction | int, size: int) -> np.ndarray:
    """``size`` independent samples of N_Z(0, σ²) as int64, exactly (vectorised CKS20).

    σ² = p/q. A Laplace candidate y (scale t = ⌊σ⌋ + 1) is kept with
    probability exp(−(|y|·q·t − p)² / (2·p·q·t²)), the same rational as
    (|y| − σ²/t)²/(2σ²) with integer numerator and denominator.
    """
    s2 = _check_sigma2(sigma2)
    if size < 0:
        raise ParameterError("size must be non-negative")
    p, q = s2.numerator, s2.denominator
    t = isqrt(p // q) + 1
    out = np.empty(size, dtype=np.int64)
    if not _vector_fits(s2, t):  # very large σ² or denominator: exact but slow
        for i in range(size):
            out[i] = discrete_gaussian_one(rng, s2)
        return out
    den = 2 * p * q * t * t
    y_max = (_A_MAX + p) // (q * t)  # |y| beyond this: a² would not fit int64
    filled = 0
    while filled < size:
        want = size - filled
        y = _laplace_candidates(rng, t, min(BATCH, want + want // 2 + 16))
        fits = np.abs(y) <= y_max
        accept = np.zeros(y.size, dtype=bool)
        a = np.abs(y[fits]) * np.int64(q * t) - np.int64(p)
        a2 = np.abs(a).astype(np.uint64)
        accept[fits] = _bernoulli_exp(rng, a2 * a2, den)
        for j in np.flatnonzero(~fits):  # far tail: exact on Python integers
            accept[j] = _accept(rng, int(y[j]), s2, t)
        kept = y[accept][:want]
        out[filled : filled + kept.size] = kept
        filled += kept.size
    return out
