"""Privacy accounting: every ε comes from Google's ``dp-accounting`` (0.6.0).

Three layers, each a thin wrapper so the library stays the only source of ε:

- :func:`gaussian_epsilon`: T composed (Poisson-subsampled) Gaussian events,
  by privacy-loss distribution (PLD, tightest) or Rényi DP (RDP) (T56);
- :func:`effective_noise_multiplier` / :func:`survivors_epsilon`: noise
  planned as n equal shares for a total multiplier z, of which only the
  m − n_C shares of honest survivors count: z_eff = z·√((m − n_C)/n) (T57);
- the distributed discrete Gaussian (DDG) of :mod:`secagg.dp.plan`: the sum of
  h honest N_Z(0, σ²) shares is not a discrete Gaussian, so we use [KLS21]
  Thm. 1 / Prop. 14 honestly. With l = Δ/√(h·σ²) and
  τ = 10·Σ_{k=1}^{h−1} exp(−2π²σ²·k/(k+1)), one round is (α, ε(α))-RDP with
  ε(α) ≤ min(α·l²/2 + τ·d, α·(l + √d·τ)²/2). Each term is a zCDP curve, so a
  round is a library ``ZCDpEvent`` (ρ = l²/2, ξ = τ·d) or
  (ρ = (l + √d·τ)²/2, ξ = 0); we compose each kind with the library's RDP
  accountant and report the smaller ε. Both are ≥ the library's RDP (and
  PLD) ε for a continuous Gaussian with multiplier 1/l, so the reported ε is
  never below what the library computes for the same noise.

Only full participation (q = 1) is accounted for the DDG: the library's
subsampled-Gaussian RDP is specific to continuous Gaussians and is not a
valid bound for a mechanism that merely shares its RDP curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import dp_accounting
from dp_accounting import pld, rdp

from secagg.dp.plan import DEFAULT_BETA, DdgPlan, plan_ddg
from secagg.errors import ParameterError

Method = Literal["pld", "rdp"]
DEFAULT_DELTA = 1e-5


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ParameterError("delta must be in (0, 1)")


def _epsilon(event: dp_accounting.DpEvent, delta: float, method: Method) -> float:
    """ε at ``delta`` for one (composed) event, from the library."""
    _check_delta(delta)
    accountant: dp_accounting.PrivacyAccountant
    if method == "pld":
        accountant = pld.PLDAccountant()
    elif method == "rdp":
        accountant = rdp.RdpAccountant()
    else:
        raise ParameterError(f"method must be 'pld' or 'rdp', not {method!r}")
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def gaussian_epsilon(
    noise_multiplier: float,
    *,
    steps: int,
    delta: float = DEFAULT_DELTA,
    sampling_rate: float = 1.0,
    method: Method = "pld",
) -> float:
    """ε of ``steps`` (Poisson-subsampled at ``sampling_rate``) Gaussian events.

    Infinite for a zero noise multiplier (nothing protects the data).
    """
    if steps < 1:
        raise ParameterError("steps must be positive")
    if not 0 < sampling_rate <= 1:
        raise ParameterError("sampling rate must be in (0, 1]")
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ParameterError("noise multiplier must be non-negative and finite")
    if noise_multiplier == 0:
        return math.inf
    event: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    return _epsilon(dp_accounting.SelfComposedDpEvent(event, steps), delta, method)


def effective_noise_multiplier(
    noise_multiplier: float, *, planned_shares: int, survivors: int, colluders: int
) -> float:
    """z·√((m − n_C)/n): the multiplier the honest survivors' shares still carry."""
    if planned_shares < 1 or survivors < 0 or colluders < 0:
        raise ParameterError("need planned_shares ≥ 1, survivors ≥ 0, colluders ≥ 0")
    honest = survivors - colluders
    if honest <= 0:
        return 0.0
    return noise_multiplier * math.sqrt(honest / planned_shares)


def survivors_epsilon(
    noise_multiplier: float,
    *,
    planned_shares: int,
    survivors: int,
    colluders: int = 0,
    steps: int,
    delta: float = DEFAULT_DELTA,
    method: Method = "pld",
) -> float:
    """ε of ``steps`` rounds of continuous Gaussian shares with m survivors, n_C colluders."""
    z = effective_noise_multiplier(
        noise_multiplier, planned_shares=planned_shares, survivors=survivors, colluders=colluders
    )
    return gaussian_epsilon(z, steps=steps, delta=delta, method=method)


# ----------------------------------------------------------------- distributed discrete Gaussian


@dataclass(frozen=True, slots=True)
class DdgRound:
    """One round's DDG noise as the accountant sees it (scaled units)."""

    honest: int
    l2_scale: float  # Δ / √(h·σ²); inf when no honest share counts
    tau: float
    dim: int

    @property
    def gaussian_multiplier(self) -> float:
        """1/(l + √d·τ): a continuous Gaussian whose RDP curve bounds this round's."""
        total = self.l2_scale + math.sqrt(self.dim) * self.tau
        return 0.0 if math.isinf(total) else 1.0 / total

    def events(self) -> tuple[dp_accounting.DpEvent, dp_accounting.DpEvent]:
        """The two zCDP forms of [KLS21] Prop. 14 (NonPrivate when nothing is hidden)."""
        if self.honest <= 0:
            return dp_accounting.NonPrivateDpEvent(), dp_accounting.NonPrivateDpEvent()
        with_xi = dp_accounting.ZCDpEvent(rho=self.l2_scale**2 / 2, xi=self.tau * self.dim)
        folded = dp_accounting.ZCDpEvent(
            rho=(self.l2_scale + math.sqrt(self.dim) * self.tau) ** 2 / 2
        )
        return with_xi, folded


def ddg_tau(sigma2: float, honest: int) -> float:
    """KLS21's τ for the sum of ``honest`` discrete Gaussians N_Z(0, σ²)."""
    return 10 * sum(
        math.exp(-2 * math.pi**2 * sigma2 * k / (k + 1)) for k in range(1, max(honest, 1))
    )


def ddg_round(plan: DdgPlan, honest: int) -> DdgRound:
    """The round in which ``honest`` honest clients' noise shares reached the sum."""
    if honest <= 0:
        return DdgRound(honest=honest, l2_scale=math.inf, tau=0.0, dim=plan.dim)
    sigma2 = plan.sigma2.numerator / plan.sigma2.denominator
    # Round against us: the sensitivity up, the noise down.
    sens = math.nextafter(math.sqrt(plan.sensitivity_sq), math.inf)
    sigma_eff = math.nextafter(math.sqrt(honest * sigma2), 0.0)
    return DdgRound(
        honest=honest,
        l2_scale=math.nextafter(sens / sigma_eff, math.inf),
        tau=ddg_tau(sigma2, honest),
        dim=plan.dim,
    )


def ddg_epsilon(rounds: Sequence[DdgRound], delta: float = DEFAULT_DELTA) -> float:
    """ε after composing ``rounds`` (RDP accountant over [KLS21]'s zCDP bounds)."""
    if not rounds:
        return 0.0
    forms = [r.events() for r in rounds]
    with_xi = dp_accounting.ComposedDpEvent([f[0] for f in forms])
    folded = dp_accounting.ComposedDpEvent([f[1] for f in forms])
    return min(_epsilon(with_xi, delta, "rdp"), _epsilon(folded, delta, "rdp"))


def planned_epsilon(plan: DdgPlan, rounds: int, delta: float = DEFAULT_DELTA) -> float:
    """The guarantee if every round completes with only the minimum honest survivors."""
    return ddg_epsilon([ddg_round(plan, plan.min_honest)] * rounds, delta)


def calibrate_plan(
    target_epsilon: float,
    *,
    rounds: int,
    dim: int,
    l2_clip: float,
    min_honest: int,
    delta: float = DEFAULT_DELTA,
    gamma: float | None = None,
    beta: float = DEFAULT_BETA,
) -> DdgPlan:
    """The plan with (nearly) the smallest z whose :func:`planned_epsilon` ≤ the target."""
    if not (math.isfinite(target_epsilon) and target_epsilon > 0) or rounds < 1:
        raise ParameterError("need a positive finite target epsilon and rounds ≥ 1")

    def plan_for(z: float) -> DdgPlan:
        return plan_ddg(
            dim=dim,
            l2_clip=l2_clip,
            noise_multiplier=z,
            min_honest=min_honest,
            gamma=gamma,
            beta=beta,
        )

    low, high = 1e-3, 1e3
    if planned_epsilon(plan_for(high), rounds, delta) > target_epsilon:
        raise ParameterError(f"epsilon {target_epsilon} needs a noise multiplier above {high}")
    for _ in range(60):  # bisection in log space: ε falls as z grows
        mid = math.sqrt(low * high)
        if planned_epsilon(plan_for(mid), rounds, delta) <= target_epsilon:
            high = mid
        else:
            low = mid
        if high / low < 1 + 1e-4:
            break
    return plan_for(high)


@dataclass(frozen=True, slots=True)
class RoundPrivacy:
    """One ledger line: what one round cost and the running total."""

    round: int
    survivors: int
    colluders: int
    honest: int
    noise_multiplier: float  # continuous-Gaussian equivalent of the honest noise
    epsilon: float  # this round alone
    epsilon_cumulative: float
    delta: float


@dataclass
class PrivacyLedger:
    """The accountant entry of a DDG run: charge each completed round by its survivors.

    ``colluders`` (n_C) are assumed to sit among the survivors and to subtract
    their own noise, so a round counts m − n_C honest shares.
    """

    plan: DdgPlan
    colluders: int
    delta: float = DEFAULT_DELTA
    rounds: list[DdgRound] = field(default_factory=list)
    entries: list[RoundPrivacy] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_delta(self.delta)
        if self.colluders < 0:
            raise ParameterError("colluders must be non-negative")

    def record(self, survivors: int) -> RoundPrivacy:
        """Charge one completed round with ``survivors`` contributors."""
        if survivors < 0:
            raise ParameterError("survivors must be non-negative")
        step = ddg_round(self.plan, survivors - self.colluders)
        self.rounds.append(step)
        entry = RoundPrivacy(
            round=len(self.rounds) - 1,
            survivors=survivors,
            colluders=self.colluders,
            honest=max(0, step.honest),
            noise_multiplier=step.gaussian_multiplier,
            epsilon=ddg_epsilon([step], self.delta),
            epsilon_cumulative=ddg_epsilon(self.rounds, self.delta),
            delta=self.delta,
        )
        self.entries.append(entry)
        return entry

    @property
    def epsilon(self) -> float:
        """ε so far (0 before any round)."""
        return self.entries[-1].epsilon_cumulative if self.entries else 0.0
