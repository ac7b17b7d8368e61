"""Random sources and samplers: reproducibility, ranges, uniformity (T01 extras)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.rng import (
    DeterministicRandomSource,
    RandomSource,
    SystemRandomSource,
    uniform_below,
    uniform_floats,
)
from tests.vectors.loader import Vector, params

# Upper 0.1% points of the chi-square distribution (standard tables): a
# correct sampler with a fixed seed passes; a biased one fails by far.
CHI2_999 = {2: 13.816, 5: 20.515, 9: 27.877, 15: 37.697}


class ConstantSource:
    """A RandomSource that returns one byte value forever (for edge cases)."""

    def __init__(self, byte: int) -> None:
        self.byte = byte

    def random_bytes(self, n: int) -> bytes:
        return bytes([self.byte]) * n


def chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


def seed_of(vector: Vector) -> bytes | int | str:
    kind = vector.str_of("seed_type")
    if kind == "bytes":
        return vector.bytes_of("seed")
    if kind == "int":
        return vector.int_of("seed")
    return vector.str_of("seed")


@pytest.mark.parametrize("vector", params("rng", "streams"))
def test_deterministic_stream_known_answers(vector: Vector) -> None:
    source = DeterministicRandomSource(seed_of(vector))
    assert source.random_bytes(64) == vector.bytes_of("output")


@pytest.mark.parametrize("vector", params("rng", "fork"))
def test_fork_known_answer(vector: Vector) -> None:
    parent = DeterministicRandomSource(vector.int_of("seed"))
    child = parent.fork(vector.str_of("label"))
    assert child.random_bytes(32) == vector.bytes_of("output")
    assert parent.random_bytes(16) == vector.bytes_of("parent_after_fork")


@pytest.mark.parametrize("vector", params("rng", "uniform_below"))
def test_uniform_below_known_answers(vector: Vector) -> None:
    source = DeterministicRandomSource(vector.int_of("seed"))
    values = uniform_below(source, vector.int_of("bound"), len(vector.ints_of("values")))
    assert [int(v) for v in values] == vector.ints_of("values")


@pytest.mark.parametrize("vector", params("rng", "uniform_floats"))
def test_uniform_floats_known_answers(vector: Vector) -> None:
    expected = vector.floats_of("values")
    values = uniform_floats(DeterministicRandomSource(vector.int_of("seed")), len(expected))
    assert [float(v) for v in values] == expected


@given(seed=st.one_of(st.binary(max_size=40), st.integers(-(2**127), 2**127 - 1), st.text()))
def test_deterministic_source_is_reproducible(seed: bytes | int | str) -> None:
    a, b = DeterministicRandomSource(seed), DeterministicRandomSource(seed)
    assert a.random_bytes(100) == b.random_bytes(100)


@given(seed=st.binary(max_size=16), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_deterministic_source_is_one_stream(seed: bytes, cuts: list[int]) -> None:
    """Reading in pieces gives the same bytes as reading at once."""
    pieces = DeterministicRandomSource(seed)
    joined = b"".join(pieces.random_bytes(n) for n in cuts)
    assert joined == DeterministicRandomSource(seed).random_bytes(sum(cuts))


@given(a=st.binary(max_size=16), b=st.binary(max_size=16))
def test_distinct_seeds_give_distinct_streams(a: bytes, b: bytes) -> None:
    if a != b:
        assert DeterministicRandomSource(a).random_bytes(32) != (
            DeterministicRandomSource(b).random_bytes(32)
        )


def test_forks_are_independent() -> None:
    parent = DeterministicRandomSource("parent")
    a = parent.fork("a").random_bytes(32)
    b = parent.fork("a").random_bytes(32)  # same label, later in the parent's stream
    c = DeterministicRandomSource("parent").fork("b").random_bytes(32)
    assert len({a, b, c}) == 3
    assert DeterministicRandomSource("parent").fork("a").random_bytes(32) == a


def test_zero_bytes() -> None:
    assert DeterministicRandomSource(0).random_bytes(0) == b""
    assert SystemRandomSource().random_bytes(0) == b""


def test_system_source() -> None:
    source = SystemRandomSource()
    assert isinstance(source, RandomSource)
    assert isinstance(DeterministicRandomSource(0), RandomSource)
    first, second = source.random_bytes(32), source.random_bytes(32)
    assert len(first) == 32
    assert first != second


def test_system_source_long_draws_are_fresh_and_balanced() -> None:
    """Draws past the OS limit come from a keystream under a fresh OS key each time."""
    source = SystemRandomSource()
    n = 1 << 16
    first, second = source.random_bytes(n), source.random_bytes(n)
    assert len(first) == len(second) == n
    assert first[:32] != second[:32]
    bits = np.unpackbits(np.frombuffer(first, dtype=np.uint8))
    # 2^19 fair bits: the mean lies within 6 standard deviations (0.004) of 1/2.
    assert abs(bits.mean() - 0.5) < 6 * 0.5 / np.sqrt(bits.size)


@given(
    seed=st.integers(0, 2**32),
    bound=st.one_of(st.integers(1, 2**32), st.sampled_from([1, 2, 3, 2**31, 2**31 + 1, 2**32])),
    n=st.integers(0, 500),
)
def test_uniform_below_stays_below_bound(seed: int, bound: int, n: int) -> None:
    values = uniform_below(DeterministicRandomSource(seed), bound, n)
    assert values.dtype == np.uint32
    assert values.shape == (n,)
    if n:
        assert int(values.max()) < bound


def test_uniform_below_bound_one_is_zero() -> None:
    assert not uniform_below(DeterministicRandomSource(0), 1, 100).any()


@pytest.mark.parametrize("bound", [0, -1, 2**32 + 1])
def test_uniform_below_refuses_bad_bounds(bound: int) -> None:
    with pytest.raises(ParameterError):
        uniform_below(DeterministicRandomSource(0), bound, 4)


@pytest.mark.parametrize("bound", [6, 10, 16])
def test_uniform_below_chi_square_small_bounds(bound: int) -> None:
    values = uniform_below(DeterministicRandomSource(f"chi2-{bound}"), bound, 60_000)
    counts = np.bincount(values, minlength=bound)
    assert counts.size == bound
    assert chi_square(counts) < CHI2_999[bound - 1]


def test_uniform_below_has_no_modulo_bias() -> None:
    """bound = 3·2^30: naive ``word % bound`` would put half the mass in the lowest third.

    Counting the thirds [0, 2^30), [2^30, 2^31), [2^31, 3·2^30) must look uniform.
    """
    bound = 3 << 30
    values = uniform_below(DeterministicRandomSource("chi2-bias"), bound, 60_000)
    thirds = np.bincount((values >> np.uint32(30)).astype(np.int64), minlength=3)
    assert thirds.size == 3
    assert chi_square(thirds) < CHI2_999[2]


def test_uniform_below_rejects_rather_than_reduces() -> None:
    """Words at or above the largest multiple of the bound are dropped, not folded in.

    With bound 3·2^30 the limit is 3·2^30, so the word 0xFFFFFFFF must never
    appear reduced (as 2^30 − 1) in the output: feed it first, then valid words.
    """

    class Scripted:
        def __init__(self) -> None:
            self.calls = 0

        def random_bytes(self, n: int) -> bytes:
            self.calls += 1
            word = (2**32 - 1) if self.calls == 1 else 5
            return word.to_bytes(4, "little") * (n // 4)

    values = uniform_below(Scripted(), 3 << 30, 10)
    assert [int(v) for v in values] == [5] * 10


@given(seed=st.integers(0, 2**32), n=st.integers(0, 1000))
def test_uniform_floats_in_unit_interval(seed: int, n: int) -> None:
    values = uniform_floats(DeterministicRandomSource(seed), n)
    assert values.dtype == np.float64
    assert values.shape == (n,)
    if n:
        assert float(values.min()) >= 0.0
        assert float(values.max()) < 1.0


def test_uniform_floats_extremes() -> None:
    """All-one bits give the largest float below 1; all-zero bits give 0."""
    top = uniform_floats(ConstantSource(0xFF), 3)
    assert np.all(top == (2**53 - 1) / 2**53)
    assert np.all(top < 1.0)
    assert not uniform_floats(ConstantSource(0x00), 3).any()


def test_uniform_floats_chi_square() -> None:
    values = uniform_floats(DeterministicRandomSource("chi2-floats"), 60_000)
    counts = np.bincount((values * 16).astype(np.int64), minlength=16)
    assert counts.size == 16
    assert chi_square(counts) < CHI2_999[15]


def test_uniform_floats_refuses_negative_n() -> None:
    with pytest.raises(ParameterError):
        uniform_floats(DeterministicRandomSource(0), -1)
