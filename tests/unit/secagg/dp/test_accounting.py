"""Accounting against dp-accounting 0.6.0: golden values (T56), survivors (T57), DDG (T59)."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from secagg.dp.accounting import (
    PrivacyLedger,
    calibrate_plan,
    ddg_epsilon,
    ddg_round,
    ddg_tau,
    effective_noise_multiplier,
    gaussian_epsilon,
    planned_epsilon,
    survivors_epsilon,
)
from secagg.dp.plan import DdgPlan, plan_ddg, rounded_sensitivity_sq, share_sigma2
from secagg.errors import ParameterError

DELTA = 1e-5

# security.md T56: (z, q, T) → (RDP, PLD) at δ = 1e-5, dp-accounting 0.6.0.
T56 = [
    (1.0, 1.0, 100, 96.116, 91.817),
    (2.0, 1.0, 100, 35.082, 33.104),
    (5.0, 1.0, 1000, 48.802, 46.211),
    (1.1, 0.01, 10_000, 5.632, 5.193),
]
# security.md T57: n = 10 shares for z = 2, m survivors, T = 100, q = 1 → PLD ε.
T57 = [(10, 33.10), (8, 38.73), (7, 42.59), (5, 54.38)]


def library(z: float, q: float, steps: int, accountant: dp_accounting.PrivacyAccountant) -> float:
    """The library called directly, independently of our wrapper."""
    event: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(z)
    if q < 1:
        event = dp_accounting.PoissonSampledDpEvent(q, event)
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return float(accountant.get_epsilon(DELTA))


@pytest.mark.parametrize(("z", "q", "steps", "rdp_eps", "pld_eps"), T56)
def test_t56_rdp_golden_values(
    z: float, q: float, steps: int, rdp_eps: float, pld_eps: float
) -> None:
    ours = gaussian_epsilon(z, steps=steps, delta=DELTA, sampling_rate=q, method="rdp")
    assert ours == pytest.approx(library(z, q, steps, rdp.RdpAccountant()), rel=1e-6)
    assert ours == pytest.approx(rdp_eps, abs=5e-4)
    assert ours > pld_eps  # RDP is the looser of the two


@pytest.mark.slow
@pytest.mark.parametrize(("z", "q", "steps", "rdp_eps", "pld_eps"), T56)
def test_t56_pld_golden_values(
    z: float, q: float, steps: int, rdp_eps: float, pld_eps: float
) -> None:
    ours = gaussian_epsilon(z, steps=steps, delta=DELTA, sampling_rate=q, method="pld")
    assert ours == pytest.approx(pld_eps, abs=5e-4)
    assert ours == pytest.approx(library(z, q, steps, pld.PLDAccountant()), rel=1e-6)


def test_pld_is_the_library_value_fast_case() -> None:
    ours = gaussian_epsilon(3.0, steps=5, delta=DELTA, method="pld")
    assert ours == pytest.approx(library(3.0, 1.0, 5, pld.PLDAccountant()), rel=1e-6)
    assert ours < gaussian_epsilon(3.0, steps=5, delta=DELTA, method="rdp")


@pytest.mark.slow
@pytest.mark.parametrize(("survivors", "expected"), T57)
def test_t57_noise_vs_survivors_pld(survivors: int, expected: float) -> None:
    eps = survivors_epsilon(2.0, planned_shares=10, survivors=survivors, steps=100, delta=DELTA)
    assert eps == pytest.approx(expected, abs=5e-3)


def test_t57_noise_vs_survivors_rdp_and_colluders() -> None:
    eps = [
        survivors_epsilon(2.0, planned_shares=10, survivors=m, steps=100, method="rdp")
        for m, _ in T57
    ]
    assert eps == sorted(eps) and len(set(eps)) == len(eps)  # fewer survivors, larger ε
    for (m, pld_value), value in zip(T57, eps, strict=True):
        direct = library(2.0 * math.sqrt(m / 10), 1.0, 100, rdp.RdpAccountant())
        assert value == pytest.approx(direct, rel=1e-6)
        assert value >= pld_value  # never below the PLD value
    # Colluders among the survivors subtract their shares: 10 survivors, 2 colluders = 8.
    assert survivors_epsilon(
        2.0, planned_shares=10, survivors=10, colluders=2, steps=100, method="rdp"
    ) == pytest.approx(eps[1], rel=1e-12)
    assert effective_noise_multiplier(2.0, planned_shares=10, survivors=3, colluders=3) == 0.0
    assert math.isinf(survivors_epsilon(2.0, planned_shares=10, survivors=2, colluders=2, steps=1))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ParameterError):
        gaussian_epsilon(1.0, steps=0)
    with pytest.raises(ParameterError):
        gaussian_epsilon(1.0, steps=1, delta=0.0)
    with pytest.raises(ParameterError):
        gaussian_epsilon(1.0, steps=1, sampling_rate=1.5)
    with pytest.raises(ParameterError):
        gaussian_epsilon(1.0, steps=1, method="moments")  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        effective_noise_multiplier(1.0, planned_shares=0, survivors=1, colluders=0)


# ----------------------------------------------------------------- distributed discrete Gaussian


def test_t57_with_the_ddg_plan_never_below_the_pld_values() -> None:
    """Plan 10 shares for z = 2; the ledger with m survivors is ≥ T57's PLD figure, and close."""
    plan = plan_ddg(dim=1000, l2_clip=1.0, noise_multiplier=2.0, min_honest=10)
    for m, pld_value in T57:
        ledger = PrivacyLedger(plan, colluders=0)
        for _ in range(100):
            ledger.record(m)
        assert pld_value <= ledger.epsilon <= 1.1 * pld_value


def test_ddg_equals_the_library_gaussian_when_tau_vanishes() -> None:
    plan = plan_ddg(dim=5000, l2_clip=2.0, noise_multiplier=1.3, min_honest=4)
    step = ddg_round(plan, 4)
    assert step.tau == 0.0
    assert step.gaussian_multiplier == pytest.approx(1.3, rel=1e-3)  # σ² rounded up
    assert step.gaussian_multiplier >= 1.3
    ours = ddg_epsilon([step] * 20, DELTA)
    direct = library(step.gaussian_multiplier, 1.0, 20, rdp.RdpAccountant())
    assert ours == pytest.approx(direct, rel=1e-6)


@pytest.mark.parametrize(("dim", "sigma2", "honest"), [(100, 4, 3), (1000, 0.5, 5), (10, 1, 2)])
def test_ddg_never_below_the_library(dim: int, sigma2: float, honest: int) -> None:
    plan = plan_ddg(dim=dim, l2_clip=1.0, noise_multiplier=1.0, min_honest=honest, gamma=1.0)
    plan = _with_sigma2(plan, Fraction(sigma2))
    step = ddg_round(plan, honest)
    gaussian_z = math.sqrt(honest * sigma2 / plan.sensitivity_sq)
    ours = ddg_epsilon([step] * 3, DELTA)
    assert ours >= gaussian_epsilon(gaussian_z, steps=3, method="rdp")
    if step.tau * dim > 1e-6:  # the discrete sum costs visibly more than a Gaussian
        assert ours > gaussian_epsilon(gaussian_z, steps=3, method="rdp") * (1 + 1e-9)


def test_ddg_never_below_the_pld_value() -> None:
    plan = plan_ddg(dim=200, l2_clip=1.0, noise_multiplier=3.0, min_honest=2)
    step = ddg_round(plan, 2)
    assert ddg_epsilon([step] * 5) >= gaussian_epsilon(
        math.sqrt(2 * float(plan.sigma2) / plan.sensitivity_sq), steps=5, method="pld"
    )


def _with_sigma2(plan: DdgPlan, sigma2: Fraction) -> DdgPlan:
    """The same plan with another per-client σ² (to reach the τ > 0 regime)."""
    return replace(plan, sigma2=sigma2)


@pytest.mark.parametrize("dim", [1, 10, 1000, 100_000])
@pytest.mark.parametrize("scaled_clip", [3.0, 64.0, 1264.9])
@pytest.mark.parametrize("beta", [0.0, math.exp(-0.5), 0.01])
def test_t59_sensitivity_matches_the_reference_formula(
    dim: int, scaled_clip: float, beta: float
) -> None:
    """[KLS21] / [GRF-DDP] conditional rounding bound, written out independently."""
    plain = (scaled_clip + math.sqrt(dim)) ** 2
    if beta == 0:
        expected = plain
    else:
        conditional = (
            scaled_clip**2
            + 0.25 * dim
            + math.sqrt(2.0 * math.log(1.0 / beta)) * (scaled_clip + 0.5 * math.sqrt(dim))
        )
        expected = min(plain, conditional)
    got = rounded_sensitivity_sq(scaled_clip, dim, beta)
    assert got == math.floor(expected)
    assert abs(got - expected) <= 1 and got <= expected


@pytest.mark.parametrize(("sigma2", "honest"), [(0.25, 2), (0.5, 10), (1.0, 5), (2.0, 100)])
def test_t59_tau_and_l2_scale_match_the_reference(sigma2: float, honest: int) -> None:
    reference_tau = 10 * sum(
        math.exp(-2 * math.pi**2 * sigma2 * k / (k + 1)) for k in range(1, honest)
    )
    assert ddg_tau(sigma2, honest) == pytest.approx(reference_tau, rel=1e-6)
    plan = plan_ddg(dim=50, l2_clip=1.0, noise_multiplier=1.0, min_honest=honest, gamma=0.1)
    plan = _with_sigma2(plan, Fraction(sigma2))
    step = ddg_round(plan, honest)
    reference_scale = math.sqrt(plan.sensitivity_sq) / math.sqrt(honest * sigma2)
    assert step.l2_scale == pytest.approx(reference_scale, rel=1e-6)
    assert step.l2_scale >= reference_scale  # rounded against us


def test_ledger_charges_survivors_and_accumulates() -> None:
    plan = plan_ddg(dim=1000, l2_clip=1.0, noise_multiplier=1.0, min_honest=3)
    ledger = PrivacyLedger(plan, colluders=1)
    full = ledger.record(6)  # 5 honest shares
    short = ledger.record(4)  # 3 honest shares: the planned minimum
    assert full.honest == 5 and short.honest == 3
    assert short.epsilon > full.epsilon
    assert short.epsilon_cumulative > full.epsilon_cumulative == full.epsilon
    assert short.epsilon == pytest.approx(planned_epsilon(plan, 1), rel=1e-12)
    assert ledger.epsilon == short.epsilon_cumulative
    assert math.isinf(ledger.record(1).epsilon)  # only the colluder survived


def test_share_sigma2_carries_the_target_with_the_minimum_survivors() -> None:
    for z, sens, h in [(0.7, 1000, 3), (2.0, 17, 1), (0.01, 5, 7)]:
        s2 = share_sigma2(z, sens, h)
        assert h * s2 >= Fraction(z) ** 2 * sens  # never less noise than planned
        assert s2 - Fraction(z) ** 2 * sens / h <= 1  # and not much more
    with pytest.raises(ParameterError):
        share_sigma2(0.0, 10, 3)
    with pytest.raises(ParameterError):
        share_sigma2(1.0, 10, 0)


def test_calibration_meets_the_target_tightly() -> None:
    target = 8.0
    plan = calibrate_plan(target, rounds=10, dim=2000, l2_clip=1.0, min_honest=4)
    assert planned_epsilon(plan, 10) <= target
    looser = plan_ddg(
        dim=2000, l2_clip=1.0, noise_multiplier=plan.noise_multiplier * 0.99, min_honest=4
    )
    assert planned_epsilon(looser, 10) > target
    with pytest.raises(ParameterError):
        calibrate_plan(0.0, rounds=10, dim=10, l2_clip=1.0, min_honest=2)
