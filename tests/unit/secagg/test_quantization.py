"""Quantisation: fixed vectors, clipping, refusals, unbiased stochastic rounding (N1, T60)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.errors import OverflowRisk, ParameterError
from secagg.quantization import (
    Quantizer,
    check_no_wrap,
    dequantize,
    dequantize_sum,
    quantize,
    required_modulus_bits,
)
from secagg.rng import DeterministicRandomSource
from tests.vectors.loader import Vector, params


@pytest.mark.parametrize("vector", params("quantization"))
def test_known_answers(vector: Vector) -> None:
    q = Quantizer(clip=float(vector.raw_of("clip")), levels=vector.int_of("levels"))
    x = np.array(vector.floats_of("x"))
    nearest = quantize(x, q, rng=None, rounding="nearest")
    assert [int(v) for v in nearest] == vector.ints_of("nearest")
    rng = DeterministicRandomSource(vector.str_of("rng_seed"))
    stochastic = quantize(x, q, rng=rng, rounding="stochastic")
    assert [int(v) for v in stochastic] == vector.ints_of("stochastic")


def test_levels_and_clipping() -> None:
    q = Quantizer(clip=2.0, levels=5)  # levels at -2, -1, 0, 1, 2
    assert q.step == 1.0
    x = np.array([-1e300, -2.0, -1.0, -0.49, 0.0, 0.51, 2.0, 3.0, 1e300])
    levels = quantize(x, q, rng=None, rounding="nearest")
    assert levels.dtype == np.uint64
    assert [int(v) for v in levels] == [0, 0, 1, 2, 2, 3, 4, 4, 4]
    assert list(dequantize(levels, q)) == [-2.0, -2.0, -1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0]


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_levels_stay_in_range(rounding: str) -> None:
    q = Quantizer(clip=1.0, levels=2**53)
    x = np.array([-1.0, -0.9999999999999999, 0.0, 0.9999999999999999, 1.0, 5.0])
    levels = quantize(x, q, rng=DeterministicRandomSource(0), rounding=rounding)  # type: ignore[arg-type]
    assert int(levels.max()) <= q.levels - 1
    assert int(levels[-1]) == q.levels - 1
    assert int(levels[0]) == 0


def test_exact_levels_are_fixed_points_of_stochastic_rounding() -> None:
    """A value exactly on a level is never rounded away from it."""
    q = Quantizer(clip=1.0, levels=9)  # step 0.25
    x = np.repeat(np.array([-1.0, -0.25, 0.0, 0.5, 1.0]), 200)
    levels = quantize(x, q, rng=DeterministicRandomSource("fixed"), rounding="stochastic")
    assert np.array_equal(dequantize(levels, q), x)


@pytest.mark.parametrize(
    ("clip", "levels", "x"),
    [
        (1.0, 17, 0.3),
        (1.0, 17, -0.71),
        (1.0, 2, 0.25),
        (3.0, 1001, 0.0031),
        (0.5, 256, 0.499),
        (1.0, 17, 0.0625 + 0.01),
    ],
)
def test_stochastic_rounding_is_unbiased(clip: float, levels: int, x: float) -> None:
    """T60: over 10^4 trials the mean error is within 3 standard errors of 0.

    The rounding goes up with probability equal to the fractional part, so
    the expected level is exact. A biased rule (floor, round-half-up applied
    stochastically, an off-by-one threshold) shifts the mean by a fixed
    fraction of a step, which is tens of standard errors at 10^4 trials.
    """
    trials = 10_000
    q = Quantizer(clip=clip, levels=levels)
    rng = DeterministicRandomSource(f"unbiased-{clip}-{levels}-{x}")
    values = dequantize(quantize(np.full(trials, x), q, rng=rng, rounding="stochastic"), q)
    errors = values - x
    assert np.all(np.abs(errors) < q.step)
    standard_error = float(errors.std(ddof=1)) / math.sqrt(trials)
    assert standard_error > 0  # x is not on a level, so both neighbours occur
    assert abs(float(errors.mean())) <= 3 * standard_error


def test_stochastic_rounding_probability_matches_fraction() -> None:
    """x a quarter step above a level rounds up in about 25% of the trials."""
    q = Quantizer(clip=1.0, levels=5)  # step 0.5
    levels = quantize(np.full(20_000, 0.125), q, rng=DeterministicRandomSource("p"))
    up = float(np.mean(levels == 3))
    assert set(np.unique(levels).tolist()) == {2, 3}
    assert abs(up - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 20_000)


def test_dequantize_sum_uses_weight_sum() -> None:
    q = Quantizer(clip=1.0, levels=3)  # levels -1, 0, 1
    total = np.array([0, 3, 6], dtype=np.uint64)  # weights 1 and 2, all at one level
    assert list(dequantize_sum(total, q, weight_sum=3)) == [-3.0, 0.0, 3.0]


@pytest.mark.parametrize("clip", [0.0, -1.0, math.inf, math.nan])
def test_quantizer_refuses_bad_clip(clip: float) -> None:
    with pytest.raises(ParameterError):
        Quantizer(clip=clip, levels=16)


@pytest.mark.parametrize("levels", [-1, 0, 1, 2**53 + 1])
def test_quantizer_refuses_bad_levels(levels: int) -> None:
    with pytest.raises(ParameterError):
        Quantizer(clip=1.0, levels=levels)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_quantize_refuses_non_finite_input(bad: float) -> None:
    q = Quantizer(clip=1.0, levels=16)
    with pytest.raises(ParameterError):
        quantize(np.array([0.0, bad]), q, rng=None, rounding="nearest")


def test_quantize_refuses_missing_rng_and_unknown_rounding() -> None:
    q = Quantizer(clip=1.0, levels=16)
    with pytest.raises(ParameterError):
        quantize(np.zeros(3), q, rng=None, rounding="stochastic")
    with pytest.raises(ParameterError):
        quantize(np.zeros(3), q, rng=None, rounding="floor")  # type: ignore[arg-type]


def test_check_no_wrap_boundary() -> None:
    """n·(Q−1)·w = 2^k − 1 fits; 2^k wraps."""
    check_no_wrap(1, 2**32, 1, 32)  # worst = 2^32 − 1
    with pytest.raises(OverflowRisk):
        check_no_wrap(1, 2**32 + 1, 1, 32)  # worst = 2^32
    check_no_wrap(3, 6, 1, 4)  # worst = 15
    with pytest.raises(OverflowRisk):
        check_no_wrap(4, 5, 1, 4)  # worst = 16
    with pytest.raises(OverflowRisk):
        check_no_wrap(1, 2, 16, 4)  # worst = 16, from the weight


def test_overflow_risk_message_names_the_fix() -> None:
    with pytest.raises(OverflowRisk, match="20 modulus bits"):
        check_no_wrap(1000, 1001, 1, 16)  # worst = 10^6 < 2^20
    assert required_modulus_bits(1000, 1001) == 20


@pytest.mark.parametrize("bits", [0, -1, 65])
def test_check_no_wrap_refuses_bad_bits(bits: int) -> None:
    with pytest.raises(ParameterError):
        check_no_wrap(1, 2, 1, bits)


@pytest.mark.parametrize(("n", "levels", "w"), [(0, 16, 1), (1, 1, 1), (1, 16, 0)])
def test_required_modulus_bits_refuses_bad_input(n: int, levels: int, w: int) -> None:
    with pytest.raises(ParameterError):
        required_modulus_bits(n, levels, w)
