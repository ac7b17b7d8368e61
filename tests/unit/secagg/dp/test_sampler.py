"""The exact discrete Gaussian sampler: statistics (T58), exactness, known answers."""

from __future__ import annotations

import ast
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from secagg.dp import sampler
from secagg.dp.sampler import (
    bernoulli_exp,
    discrete_gaussian,
    discrete_gaussian_one,
    discrete_laplace,
    uniform_below,
    uniform_int,
)
from secagg.errors import ParameterError
from secagg.rng import DeterministicRandomSource


class ScriptedSource:
    """A RandomSource that returns scripted little-endian words (then fails loudly)."""

    def __init__(self, words: list[int], width: int = 8) -> None:
        self._data = b"".join(w.to_bytes(width, "little") for w in words)
        self._pos = 0

    def random_bytes(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise AssertionError("the sampler drew more randomness than scripted")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    @property
    def left(self) -> int:
        return len(self._data) - self._pos


def exact_pmf(sigma2: float, support: np.ndarray) -> np.ndarray:
    """P(y) ∝ exp(−y²/(2σ²)) on ``support``, normalised over a wide range."""
    wide = np.arange(-int(40 * math.sqrt(sigma2)) - 40, int(40 * math.sqrt(sigma2)) + 41)
    norm = np.exp(-(wide.astype(float) ** 2) / (2 * sigma2)).sum()
    out: np.ndarray = np.exp(-(support.astype(float) ** 2) / (2 * sigma2)) / norm
    return out


def exact_variance(sigma2: float) -> float:
    wide = np.arange(-int(40 * math.sqrt(sigma2)) - 40, int(40 * math.sqrt(sigma2)) + 41)
    p = exact_pmf(sigma2, wide)
    return float((p * wide.astype(float) ** 2).sum())


def check_distribution(samples: np.ndarray, sigma2: float, *, variance_rtol: float | None) -> None:
    """χ² against the exact pmf (tails pooled), mean within 3 SE, variance as asked."""
    n = samples.size
    values, counts = np.unique(samples, return_counts=True)
    lo, hi = int(values.min()), int(values.max())
    support = np.arange(lo, hi + 1)
    expected = exact_pmf(sigma2, support) * n
    observed = np.zeros(support.size)
    observed[values - lo] = counts
    # Bins with ≥ 5 expected counts, plus one bin for everything else (the tails).
    keep = expected >= 5
    obs = np.append(observed[keep], n - observed[keep].sum())
    exp = np.append(expected[keep], n - expected[keep].sum())
    if exp[-1] < 5:  # too thin for a bin of its own: fold it into the last one
        obs[-2] += obs[-1]
        exp[-2] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    p_value = stats.chisquare(obs, exp).pvalue
    assert p_value > 0.001, f"χ² p = {p_value}"
    var = exact_variance(sigma2)
    assert abs(samples.mean()) <= 3 * math.sqrt(var / n)
    if variance_rtol is not None:
        assert abs(samples.var() / var - 1) <= variance_rtol


SIGMAS2 = [Fraction(1, 4), Fraction(4), Fraction(400)]  # σ = 0.5, 2, 20


@pytest.mark.slow
@pytest.mark.parametrize("sigma2", SIGMAS2, ids=["0.5", "2", "20"])
def test_t58_million_samples(sigma2: Fraction) -> None:
    samples = discrete_gaussian(DeterministicRandomSource(f"t58-{sigma2}"), sigma2, 10**6)
    check_distribution(samples, float(sigma2), variance_rtol=0.01)


@pytest.mark.parametrize("sigma2", SIGMAS2, ids=["0.5", "2", "20"])
def test_t58_small_sample(sigma2: Fraction) -> None:
    n = 20_000
    samples = discrete_gaussian(DeterministicRandomSource(f"t58s-{sigma2}"), sigma2, n)
    assert samples.dtype == np.int64 and samples.size == n
    check_distribution(samples, float(sigma2), variance_rtol=None)
    # Sample variance within 4 standard errors (SE from the fourth moment).
    wide = np.arange(-200, 201)
    p = exact_pmf(float(sigma2), wide)
    var = float((p * wide**2).sum())
    m4 = float((p * wide.astype(float) ** 4).sum())
    assert abs(samples.var() - var) <= 4 * math.sqrt((m4 - var**2) / n)


def test_scalar_reference_matches_the_pmf() -> None:
    rng = DeterministicRandomSource("scalar")
    samples = np.array([discrete_gaussian_one(rng, Fraction(9, 4)) for _ in range(4000)])
    check_distribution(samples, 2.25, variance_rtol=None)


def test_far_tail_goes_through_the_exact_scalar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a tiny int limit most candidates take the Python-integer path; same law.
    monkeypatch.setattr(sampler, "_A_MAX", 6)
    samples = discrete_gaussian(DeterministicRandomSource("tail"), 4, 20_000)
    check_distribution(samples, 4.0, variance_rtol=0.05)


def test_huge_sigma_uses_the_scalar_sampler() -> None:
    sigma2 = Fraction(1 << 50)
    assert not sampler._vector_fits(sigma2, math.isqrt(1 << 50) + 1)
    samples = discrete_gaussian(DeterministicRandomSource("huge"), sigma2, 200)
    sigma = 2.0**25
    # Within 6σ, and not degenerate: the spread is of the order of σ.
    assert np.abs(samples).max() < 6 * sigma
    assert 0.5 * sigma < samples.std() < 1.5 * sigma


def test_reproducible_and_seed_dependent() -> None:
    a = discrete_gaussian(DeterministicRandomSource(7), 400, 1000)
    b = discrete_gaussian(DeterministicRandomSource(7), 400, 1000)
    c = discrete_gaussian(DeterministicRandomSource(8), 400, 1000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rejects_floats_and_bad_sizes() -> None:
    rng = DeterministicRandomSource(0)
    with pytest.raises(ParameterError, match="no floats"):
        discrete_gaussian(rng, 2.5, 10)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        discrete_gaussian(rng, Fraction(-1), 10)
    with pytest.raises(ParameterError):
        discrete_gaussian(rng, 4, -1)
    assert discrete_gaussian(rng, 4, 0).size == 0


# ----------------------------------------------------------------- no floats on the path


def test_sampling_module_has_no_float_arithmetic() -> None:
    """Syntax-tree audit: no float literal, true division, float() or float maths."""
    tree = ast.parse(Path(sampler.__file__).read_text())
    offences = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            offences.append(f"float literal {node.value} at line {node.lineno}")
        elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
            offences.append(f"true division at line {node.lineno}")
        elif isinstance(node, ast.Name) and node.id in {"float", "math"}:
            offences.append(f"{node.id} at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and (
            node.attr.startswith("float")
            or node.attr in {"exp", "log", "sqrt", "random", "uniform", "normal"}
        ):
            offences.append(f".{node.attr} at line {node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module in {"math", "random"}:
            if any(a.name != "isqrt" for a in node.names):
                offences.append(f"import from {node.module} at line {node.lineno}")
    assert offences == []


class Recording:
    """Passes a source through and keeps every byte it handed out."""

    def __init__(self, inner: DeterministicRandomSource) -> None:
        self.inner = inner
        self.tape = bytearray()

    def random_bytes(self, n: int) -> bytes:
        out = self.inner.random_bytes(n)
        self.tape += out
        return out


class Replay:
    def __init__(self, tape: bytes) -> None:
        self.tape, self.pos = tape, 0

    def random_bytes(self, n: int) -> bytes:
        assert self.pos + n <= len(self.tape), "drew more bytes than recorded"
        self.pos += n
        return self.tape[self.pos - n : self.pos]


@pytest.mark.parametrize("sigma2", [Fraction(1, 4), Fraction(400)])
def test_only_the_random_source_supplies_randomness(sigma2: Fraction) -> None:
    """The output is a function of the source's bytes alone: replaying them reproduces it."""
    recording = Recording(DeterministicRandomSource("tape"))
    first = discrete_gaussian(recording, sigma2, 5000)
    replay = Replay(bytes(recording.tape))
    assert np.array_equal(discrete_gaussian(replay, sigma2, 5000), first)
    assert replay.pos == len(recording.tape)


# ----------------------------------------------------------------- known answers


def test_bernoulli_exp_known_answers() -> None:
    # γ = 1/2: the coins are Bernoulli(γ/k) = uniform_int(2k) < 1; K odd → True.
    # uniform_int(2) reads 1 byte: 0 < 1 succeeds (K → 2); uniform_int(4) reads 1 byte
    # and keeps its top 2 bits: 0xC0 → 3, not < 1, fails at K = 2 → even → False.
    assert bernoulli_exp(ScriptedSource([0x00, 0xC0], width=1), Fraction(1, 2)) is False
    # The first coin fails (top bit 1 → 1, not < 1): K = 1 → odd → True.
    assert bernoulli_exp(ScriptedSource([0x80], width=1), Fraction(1, 2)) is True
    # γ = 0: the first coin is Bernoulli(0), which fails without any doubt → True.
    assert bernoulli_exp(ScriptedSource([0x00], width=1), Fraction(0)) is True


def test_uniform_int_known_answers() -> None:
    # bound 10 → 4 bits (top bits of one byte); 0xF0 → 15 rejected, 0x30 → 3 accepted.
    assert uniform_int(ScriptedSource([0xF0, 0x30], width=1), 10) == 3
    assert uniform_int(ScriptedSource([], width=1), 1) == 0


def test_vectorised_coins_known_answers() -> None:
    # Bernoulli(exp(−num/den)) with den = 3 and num = [0, 3]: 32-bit words.
    # k = 1..4 bounds 3, 6, 9, 12; m = ⌊2^32/b⌋; coin_k = w < num·m.
    m = [(1 << 32) // b for b in (3, 6, 9, 12)]
    # element 0 (num 0): every coin fails at k = 1 → K = 1 → True.
    # element 1 (num 3 = den, γ = 1): coin k=1 is w < 3·m1 (w = 0 passes), k=2 passes
    # with w = 0, k=3 fails with w = 3·m3 → K = 3 → odd → True.
    words = [0, 0, 0, 0, 0, 0, 3 * m[2], 0]
    source = ScriptedSource(words, width=4)
    out = sampler._bernoulli_exp_le1(source, np.array([0, 3], dtype=np.uint64), 3)
    assert out.tolist() == [True, True]
    # Same, but the coin at k = 2 fails for element 1 (w = 3·m2): K = 2 → False.
    words = [0, 0, 0, 0, 0, 3 * m[1], 0, 0]
    out = sampler._bernoulli_exp_le1(
        ScriptedSource(words, width=4), np.array([0, 3], dtype=np.uint64), 3
    )
    assert out.tolist() == [True, False]


def test_discrete_laplace_known_answer() -> None:
    # s = t = 1: u = uniform_int(1) = 0 and Bernoulli(e^0) are certain (no bytes);
    # geometric: Bernoulli(e^−1) has coins Bernoulli(1/k): k=1 certain, k=2 reads a
    # byte, 0x80 → 1, not < 1 → K = 2 → False, so V = 0; the sign byte 0x00 → positive;
    # x = 0 is kept when positive → 0.
    source = ScriptedSource([0x80, 0x00], width=1)
    assert discrete_laplace(source, 1, 1) == 0
    assert source.left == 0


def test_uniform_below_rejects_the_biased_tail() -> None:
    bound = 3
    limit = ((1 << 64) // bound) * bound
    m = (1 << 64) // bound
    source = ScriptedSource([limit, 2 * m + 5])  # first word rejected, second → 2
    assert uniform_below(source, bound, 1).tolist() == [2]
