"""Plan layout, the client encoding and the noisy sum through the in-memory protocol."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from protocol.build import make_config
from protocol.simulation import simulate
from secagg.dp.accounting import PrivacyLedger
from secagg.dp.encode import (
    NoiseTailExceeded,
    clip_l2,
    conditional_round,
    decode_sum,
    privatize,
    stochastic_round,
)
from secagg.dp.plan import min_honest_survivors, plan_ddg
from secagg.errors import OverflowRisk, ParameterError
from secagg.quantization import Quantizer, check_no_wrap
from secagg.rng import DeterministicRandomSource


def gaussian(seed: int, dim: int, scale: float = 1.0) -> np.ndarray:
    """Test data from the deterministic stream (floats, Box–Muller)."""
    words = np.frombuffer(DeterministicRandomSource(seed).random_bytes(16 * dim), "<u8")
    u = (words.reshape(2, dim) >> np.uint64(11)).astype(np.float64) / 2.0**53
    out: np.ndarray = scale * np.sqrt(-2 * np.log1p(-u[0])) * np.cos(2 * np.pi * u[1])
    return out


def test_plan_layout_has_step_gamma_and_never_wraps() -> None:
    plan = plan_ddg(dim=3000, l2_clip=0.5, noise_multiplier=1.2, min_honest=4)
    assert plan.levels % 2 == 1 and plan.levels == 2 * plan.half_range + 1
    assert Quantizer(plan.quantizer_clip, plan.levels).step == pytest.approx(plan.gamma, rel=1e-12)
    assert plan.gamma == pytest.approx(0.5 / math.ceil(4 * math.sqrt(3000)))
    bits = plan.modulus_bits(10)
    check_no_wrap(10, plan.levels, 1, bits)  # the sum of 10 clients fits
    with pytest.raises(OverflowRisk):
        check_no_wrap(10, plan.levels, 1, bits - 1)
    # The noise bound: 2·d·exp(−(B+1)²/(2σ²)) ≤ 2^−40.
    sigma2 = float(plan.sigma2)
    tail = 2 * plan.dim * math.exp(-((plan.noise_bound + 1) ** 2) / (2 * sigma2))
    assert tail <= 2.0**-40


def test_min_honest_survivors() -> None:
    assert min_honest_survivors(6, 2) == 4
    with pytest.raises(ParameterError, match="no honest survivor"):
        min_honest_survivors(3, 3)


def test_plan_refuses_bad_parameters() -> None:
    for kwargs in (
        {"dim": 0},
        {"l2_clip": 0.0},
        {"noise_multiplier": -1.0},
        {"min_honest": 0},
        {"gamma": float("nan")},
        {"beta": 1.0},
    ):
        args: dict[str, float] = {
            "dim": 10,
            "l2_clip": 1.0,
            "noise_multiplier": 1.0,
            "min_honest": 2,
            **kwargs,
        }
        with pytest.raises(ParameterError):
            plan_ddg(**args)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="2\\^53"):
        plan_ddg(dim=10, l2_clip=1.0, noise_multiplier=1e6, min_honest=1, gamma=1e-9)


def test_clip_l2() -> None:
    x = np.array([3.0, 4.0])
    assert np.allclose(clip_l2(x, 1.0), [0.6, 0.8])
    assert np.array_equal(clip_l2(x, 10.0), x)
    with pytest.raises(ParameterError):
        clip_l2(np.array([np.nan]), 1.0)
    with pytest.raises(ParameterError):
        clip_l2(np.ones((2, 2)), 1.0)


def test_stochastic_rounding_is_unbiased() -> None:
    """T60 (stochastic rounding): mean error within 3 SE over 10^4 trials."""
    rng = DeterministicRandomSource("round")
    x = np.array([0.3, -1.7, 2.5, 7.0])
    trials = np.stack([stochastic_round(rng, x) for _ in range(10_000)])
    assert set(np.unique(trials[:, 0])) <= {0, 1} and np.all(trials[:, 3] == 7)
    frac = x - np.floor(x)
    se = np.sqrt(frac * (1 - frac) / trials.shape[0])
    assert np.all(np.abs(trials.mean(axis=0) - x) <= 3 * se + 1e-12)


def test_conditional_rounding_respects_the_exact_bound() -> None:
    plan = plan_ddg(dim=400, l2_clip=1.0, noise_multiplier=1.0, min_honest=2)
    rng = DeterministicRandomSource("cond")
    x = clip_l2(gaussian(1, 400), 1.0) / plan.gamma
    for _ in range(50):
        z = conditional_round(rng, x, plan.sensitivity_sq)
        assert int(np.dot(z, z)) <= plan.sensitivity_sq
        assert np.all(np.abs(z - x) < 1)
    with pytest.raises(ParameterError, match="clipped"):
        conditional_round(rng, x * 2, plan.sensitivity_sq)  # an unclipped vector never fits


def test_privatize_levels_fit_and_decode_to_the_noisy_update() -> None:
    dim = 20_000
    plan = plan_ddg(dim=dim, l2_clip=1.0, noise_multiplier=0.5, min_honest=1)
    x = gaussian(2, dim, 0.05)  # norm ≈ 7: clipped to 1
    levels = privatize(x, plan, DeterministicRandomSource("privatize"))
    assert levels.dtype == np.uint64 and levels.size == dim
    assert int(levels.max()) < plan.levels
    noisy = decode_sum(levels, 1, plan)
    error = (noisy - clip_l2(x, 1.0)) / plan.gamma  # rounding + noise, scaled units
    sigma = math.sqrt(float(plan.sigma2))
    assert abs(error.mean()) <= 4 * sigma / math.sqrt(dim)
    assert error.std() == pytest.approx(sigma, rel=0.03)


def test_privatize_refuses_wrong_sizes_and_fails_closed_on_the_tail() -> None:
    plan = plan_ddg(dim=100, l2_clip=1.0, noise_multiplier=1.0, min_honest=2)
    rng = DeterministicRandomSource("tail")
    with pytest.raises(ParameterError, match="coordinates"):
        privatize(np.zeros(99), plan, rng)
    tight = replace(plan, noise_bound=0)  # any non-zero noise is "beyond the bound"
    with pytest.raises(NoiseTailExceeded):
        privatize(np.zeros(100), tight, rng)


def test_noisy_sum_through_secagg_with_dropouts_is_exact_and_charged() -> None:
    """Levels go through the masked round unchanged; the ledger charges the survivors."""
    clients, dim = 7, 400
    config = make_config(clients=clients, dim=dim)  # the default threshold and colluders
    colluders = (clients - 1) // 3
    h_min = min_honest_survivors(config.threshold, colluders)
    plan = plan_ddg(dim=dim, l2_clip=1.0, noise_multiplier=1.0, min_honest=h_min)
    config = make_config(
        clients=clients, dim=dim, levels=plan.levels, clip=plan.quantizer_clip, max_weight=1
    )
    assert config.modulus_bits == plan.modulus_bits(clients)
    rng = DeterministicRandomSource("secagg-dp")
    updates = {c: gaussian(c, dim, 0.1) for c in config.clients}
    levels = {c: privatize(updates[c], plan, rng) for c in config.clients}
    report = simulate(config, levels=levels, drops={"masked": 2}, seed=3)
    assert report.completed and report.exact
    result = report.result
    assert result is not None and result.weight_sum == clients - 2
    noisy_sum = result.weighted_sum()
    assert np.allclose(noisy_sum, decode_sum(result.total, result.weight_sum, plan))
    clipped = sum(clip_l2(updates[c], 1.0) for c in report.survivors)
    noise = (noisy_sum - clipped) / plan.gamma
    expected_sd = math.sqrt(len(report.survivors) * float(plan.sigma2))
    assert noise.std() == pytest.approx(expected_sd, rel=0.1)
    ledger = PrivacyLedger(plan, colluders=colluders)
    entry = ledger.record(len(report.survivors))
    assert entry.honest == len(report.survivors) - colluders >= h_min
    assert entry.noise_multiplier >= plan.noise_multiplier  # at least the planned noise
