"""Properties of the exact sampler's building blocks (secagg.dp.sampler)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from secagg.dp import sampler
from secagg.dp.sampler import bernoulli_exp, uniform_below
from secagg.rng import DeterministicRandomSource

N = 20_000


def within(freq: float, p: float, n: int, z: float = 5.0) -> bool:
    """|freq − p| within z binomial standard errors (plus one count of slack)."""
    return abs(freq - p) <= z * math.sqrt(p * (1 - p) / n) + 1 / n


@given(
    num=st.integers(min_value=0, max_value=3000),
    den=st.integers(min_value=1, max_value=1000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_vectorised_bernoulli_exp_frequency(num: int, den: int, seed: int) -> None:
    rng = DeterministicRandomSource(seed)
    coins = sampler._bernoulli_exp(rng, np.full(N, num, dtype=np.uint64), den)
    assert within(float(coins.mean()), math.exp(-num / den), N)


@given(
    num=st.integers(min_value=0, max_value=60),
    den=st.integers(min_value=1, max_value=20),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_scalar_bernoulli_exp_frequency(num: int, den: int, seed: int) -> None:
    rng = DeterministicRandomSource(seed)
    n = 1000
    hits = sum(bernoulli_exp(rng, Fraction(num, den)) for _ in range(n))
    assert within(hits / n, math.exp(-num / den), n)


@given(t=st.integers(min_value=1, max_value=60), seed=st.integers(min_value=0, max_value=2**32))
def test_discrete_laplace_law(t: int, seed: int) -> None:
    """P(y) = tanh(1/(2t))·exp(−|y|/t): check P(0), P(1), P(−1)."""
    y = sampler._laplace_candidates(DeterministicRandomSource(seed), t, N)
    n = y.size
    assert n > N // 3  # acceptance is at least e^−1 / 2 or so
    p0 = math.tanh(1 / (2 * t))
    for value, p in ((0, p0), (1, p0 * math.exp(-1 / t)), (-1, p0 * math.exp(-1 / t))):
        assert within(float(np.mean(y == value)), p, n)


@given(
    bound=st.integers(min_value=1, max_value=2**64),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_uniform_below_stays_below(bound: int, seed: int) -> None:
    values = uniform_below(DeterministicRandomSource(seed), bound, 500)
    assert values.dtype == np.uint64
    assert int(values.max()) < bound
    if bound >= 1 << 20:  # wide ranges are not stuck at the bottom
        assert int(values.max()) > bound // 2


@given(
    bound=st.integers(min_value=2, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_uniform_below_is_uniform_on_small_ranges(bound: int, seed: int) -> None:
    values = uniform_below(DeterministicRandomSource(seed), bound, N)
    counts = np.bincount(values.astype(np.int64), minlength=bound)
    assert all(within(c / N, 1 / bound, N) for c in counts)
