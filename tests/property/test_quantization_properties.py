"""Quantisation error bounds and the wrap-around guard (N1, T60)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import OverflowRisk, ParameterError
from secagg.quantization import (
    Quantizer,
    Rounding,
    check_no_wrap,
    dequantize_sum,
    quantize,
    required_modulus_bits,
)
from secagg.rng import DeterministicRandomSource

# Float64 slack for the bound: the bound is exact-arithmetic; the computation
# loses a few ulps of n·c. 2^-40·n·c is < 0.1% of the bound for Q ≤ 2^32.
FLOAT_SLACK = 2.0**-40


@st.composite
def quantizers(draw: st.DrawFn) -> Quantizer:
    clip = draw(st.floats(min_value=1e-3, max_value=1e3, allow_nan=False), label="clip")
    levels = draw(
        st.one_of(st.integers(2, 2**16), st.integers(2, 2**32), st.sampled_from([2, 3, 2**8 + 1]))
    )
    return Quantizer(clip=clip, levels=levels)


@st.composite
def client_vectors(draw: st.DrawFn, clip: float) -> np.ndarray:
    """(n, d) values inside [−c, c], including the endpoints."""
    n = draw(st.integers(1, 8), label="n")
    d = draw(st.integers(1, 16), label="d")
    unit = st.one_of(
        st.floats(min_value=-1.0, max_value=1.0, allow_nan=False),
        st.sampled_from([-1.0, 0.0, 1.0]),
    )
    values = draw(st.lists(unit, min_size=n * d, max_size=n * d), label="values")
    return np.clip(np.array(values).reshape(n, d) * clip, -clip, clip)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@given(q=quantizers(), data=st.data())
def test_dequantised_sum_error_within_bound(
    rounding: Rounding, q: Quantizer, data: st.DataObject
) -> None:
    """|dequantize(Σ q_k) − Σ x_k| ≤ Quantizer.error_bound(n, rounding) per coordinate."""
    x = data.draw(client_vectors(q.clip), label="x")
    n = x.shape[0]
    rng = DeterministicRandomSource(data.draw(st.integers(0, 2**32), label="rng_seed"))
    levels = [quantize(x[k], q, rng=rng, rounding=rounding) for k in range(n)]
    for lv in levels:
        assert lv.dtype == np.uint64
        assert int(lv.max()) <= q.levels - 1
    total = [sum(int(lv[i]) for lv in levels) for i in range(x.shape[1])]  # exact integers
    estimate = dequantize_sum(np.array(total, dtype=np.float64), q, weight_sum=n)
    error = np.abs(estimate - x.sum(axis=0))
    bound = q.error_bound(n, rounding)
    assert float(error.max()) <= bound + FLOAT_SLACK * n * q.clip


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@given(q=quantizers(), data=st.data())
def test_weighted_sum_error_within_bound(
    rounding: Rounding, q: Quantizer, data: st.DataObject
) -> None:
    """With integer weights the error of Σ w_k x_k is at most error_bound(Σ w_k)."""
    x = data.draw(client_vectors(q.clip), label="x")
    n = x.shape[0]
    weights = data.draw(st.lists(st.integers(1, 50), min_size=n, max_size=n), label="w")
    rng = DeterministicRandomSource(data.draw(st.integers(0, 2**32), label="rng_seed"))
    exact_total = [0] * x.shape[1]
    for k in range(n):
        lv = quantize(x[k], q, rng=rng, rounding=rounding)
        exact_total = [t + weights[k] * int(v) for t, v in zip(exact_total, lv, strict=True)]
    estimate = dequantize_sum(np.array(exact_total, dtype=np.float64), q, weight_sum=sum(weights))
    reference = (np.array(weights, dtype=np.float64)[:, None] * x).sum(axis=0)
    bound = q.error_bound(sum(weights), rounding)
    assert float(np.abs(estimate - reference).max()) <= bound + FLOAT_SLACK * sum(weights) * q.clip


@given(q=quantizers(), data=st.data())
def test_nearest_rounding_picks_the_nearest_level(q: Quantizer, data: st.DataObject) -> None:
    """Per client, nearest rounding is within half a step, and no other level is closer."""
    x = data.draw(client_vectors(q.clip), label="x")[0]
    lv = quantize(x, q, rng=None, rounding="nearest").astype(np.float64)
    back = lv * q.step - q.clip
    slack = FLOAT_SLACK * q.clip
    assert float(np.abs(back - x).max()) <= q.step / 2 + slack
    for neighbour in (lv - 1, lv + 1):
        ok = (neighbour >= 0) & (neighbour <= q.levels - 1)
        other = neighbour * q.step - q.clip
        assert np.all(~ok | (np.abs(other - x) + slack >= np.abs(back - x)))


@st.composite
def wrap_configs(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(n, levels, max_weight, bits): uniform, or placed right at the wrap boundary."""
    n = draw(st.integers(1, 2**20), label="n")
    levels = draw(st.one_of(st.integers(2, 2**40), st.sampled_from([2, 3, 2**16, 2**16 + 1])))
    w = draw(st.integers(1, 2**16), label="max_weight")
    near = required_modulus_bits(n, levels, w) + draw(st.integers(-2, 2), label="offset")
    bits = draw(st.one_of(st.integers(1, 64), st.just(min(max(near, 1), 64))), label="bits")
    return n, levels, w, bits


@given(config=wrap_configs())
def test_check_no_wrap_refuses_exactly_the_wrapping_configurations(
    config: tuple[int, int, int, int],
) -> None:
    """OverflowRisk iff n·(Q−1)·w ≥ 2^k; and when accepted, the worst case fits."""
    n, levels, w, bits = config
    worst = n * (levels - 1) * w
    if worst >= 1 << bits:
        with pytest.raises(OverflowRisk):
            check_no_wrap(n, levels, w, bits)
        return
    check_no_wrap(n, levels, w, bits)
    # Worst case: every client sends +∞-clipped values (level Q − 1) at the largest weight.
    q = Quantizer(clip=1.0, levels=levels)
    top = quantize(np.array([1e300, 1.0]), q, rng=None, rounding="nearest")
    assert [int(v) for v in top] == [levels - 1, levels - 1]
    total = n * (w * int(top[0]))  # Σ over n clients of w·(Q − 1), as python ints
    assert total < 1 << bits


@given(
    n=st.integers(1, 2**24),
    levels=st.integers(2, 2**40),
    w=st.integers(1, 2**16),
)
def test_required_modulus_bits_is_minimal(n: int, levels: int, w: int) -> None:
    """k = required_modulus_bits is accepted and k − 1 is refused."""
    k = required_modulus_bits(n, levels, w)
    assert (1 << (k - 1)) <= n * (levels - 1) * w < (1 << k)
    if k <= 64:
        check_no_wrap(n, levels, w, k)
    else:
        with pytest.raises(ParameterError):
            check_no_wrap(n, levels, w, k)
    if 1 <= k - 1 <= 64:
        with pytest.raises(OverflowRisk):
            check_no_wrap(n, levels, w, k - 1)
