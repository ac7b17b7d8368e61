"""The distributed discrete Gaussian plan: every public number of the mechanism.

Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation" (ICML 2021), without the random
rotation (we do not sum modulo a small 2^b, so flattening is not needed).
Units: a client's update is clipped to L2 norm ``l2_clip`` (c), divided by
the granularity ``gamma`` (γ) and rounded to integers; "scaled" numbers below
are in those integer units.

Neighbouring relation: one client's clipped update is replaced by zero while
it still adds its noise share (the noise does not depend on its data), as in
[KLS21]. Noise is planned for the *minimum number of honest survivors*
h_min = t − n_C (threshold minus assumed colluders): each client adds
N_Z(0, σ²) with σ² ≥ z²·Δ²/h_min, so any h_min honest shares together carry
the target noise z·Δ even if every other client drops out and the n_C
colluders subtract their own shares.

Constants (documented choices, not tuning knobs):

- ``DEFAULT_BETA = exp(−0.5)``: conditional randomised rounding retries a
  rounding whose norm exceeds the KLS21 bound, which holds with probability
  ≥ 1 − β per try (TFF's ``ddp_secure_aggregator`` uses the same β);
- default γ = c / max(64, ⌈4·√d⌉): the scaled clip is 4√d, so the rounding
  inflates the sensitivity by under 1% and σ (scaled) is large enough that
  KLS21's τ term vanishes;
- ``DEFAULT_FAIL_LOG2 = 40``: the noise bound B is set so that a client's
  noise vector leaves [−B, B]^d with probability ≤ 2^−40 per round (the
  discrete Gaussian is σ-subgaussian [CKS20], so P(|X| > B) ≤
  2·exp(−(B+1)²/(2σ²))); such a client refuses to send (a data-independent
  event) rather than risk a wrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from secagg.errors import ParameterError
from secagg.quantization import check_no_wrap, required_modulus_bits

DEFAULT_BETA = math.exp(-0.5)
DEFAULT_FAIL_LOG2 = 40
#: Largest number of levels the round config accepts.
_MAX_LEVELS = 1 << 53


def rounded_sensitivity_sq(scaled_clip: float, dim: int, beta: float) -> int:
    """⌊Δ²⌋ in scaled units after conditional randomised rounding ([KLS21] Thm. 1 / Prop. 22).

    Δ² = min((c + √d)², c² + d/4 + √(2 ln(1/β))·(c + √d/2)) for scaled clip
    c; β = 0 is plain stochastic rounding, where only (c + √d)² holds. Every
    rounded vector the client sends is checked against this integer exactly.
    """
    if not (math.isfinite(scaled_clip) and scaled_clip > 0) or dim < 1:
        raise ParameterError("need a positive scaled clip and dim ≥ 1")
    if not 0 <= beta < 1:
        raise ParameterError("beta must be in [0, 1)")
    root_d = math.sqrt(dim)
    bound = (scaled_clip + root_d) ** 2
    if beta > 0:
        conditional = (
            scaled_clip**2
            + dim / 4
            + math.sqrt(2 * math.log(1 / beta)) * (scaled_clip + root_d / 2)
        )
        bound = min(bound, conditional)
    return math.floor(bound)


def share_sigma2(noise_multiplier: float, sensitivity_sq: int, min_honest: int) -> Fraction:
    """Per-client σ² (scaled) so that ``min_honest`` shares sum to variance ≥ z²·Δ².

    Rounded *up*: to an integer when ≥ 1 (keeps the sampler's numbers small),
    else to a multiple of 2^−16. The accountant uses this exact value.
    """
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ParameterError("noise multiplier must be positive and finite")
    if min_honest < 1:
        raise ParameterError("the plan needs at least one honest survivor")
    target = Fraction(noise_multiplier) ** 2 * sensitivity_sq / min_honest
    if target >= 1:
        return Fraction(math.ceil(target))
    return Fraction(math.ceil(target * (1 << 16)), 1 << 16)


def noise_bound(sigma2: Fraction, dim: int, fail_log2: int) -> int:
    """B with P(some of d noise coordinates leaves [−B, B]) ≤ 2^−fail_log2."""
    sigma = math.sqrt(sigma2.numerator / sigma2.denominator)
    return math.ceil(sigma * math.sqrt(2 * (math.log(2 * dim) + fail_log2 * math.log(2))))


def min_honest_survivors(threshold: int, colluders: int) -> int:
    """h_min = t − n_C: the fewest honest clients whose noise a completed round carries."""
    honest = threshold - colluders
    if honest < 1:
        raise ParameterError(
            f"threshold {threshold} with {colluders} colluders leaves no honest survivor"
        )
    return honest


@dataclass(frozen=True, slots=True)
class DdgPlan:
    """The public parameters of one distributed-DP run (same for every client and round)."""

    dim: int
    l2_clip: float
    gamma: float
    beta: float
    noise_multiplier: float
    min_honest: int
    sigma2: Fraction  # per client, scaled units
    sensitivity_sq: int  # scaled units: every sent rounding has ||z||² ≤ this
    noise_bound: int  # scaled units: every sent noise coordinate is in [−B, B]
    fail_log2: int

    @property
    def signal_bound(self) -> int:
        """Largest |z_i| of an accepted rounding: ⌊√(sensitivity_sq)⌋."""
        return math.isqrt(self.sensitivity_sq)

    @property
    def half_range(self) -> int:
        """H: a client's value z_i + noise_i lies in [−H, H]; it sends z_i + noise_i + H."""
        return self.signal_bound + self.noise_bound

    @property
    def levels(self) -> int:
        """Q = 2H + 1 (odd), so the config's quantiser has step exactly γ."""
        return 2 * self.half_range + 1

    @property
    def quantizer_clip(self) -> float:
        """The round config's clip, γ·H: then Σ levels dequantises to γ·Σ (z + noise)."""
        return self.gamma * self.half_range

    def modulus_bits(self, clients: int) -> int:
        """Bits for a round of ``clients`` (weight 1 each) whose sum can never wrap."""
        bits = required_modulus_bits(clients, self.levels, 1)
        check_no_wrap(clients, self.levels, 1, bits)
        return bits


def plan_ddg(
    *,
    dim: int,
    l2_clip: float,
    noise_multiplier: float,
    min_honest: int,
    gamma: float | None = None,
    beta: float = DEFAULT_BETA,
    fail_log2: int = DEFAULT_FAIL_LOG2,
) -> DdgPlan:
    """Fix every public number of the mechanism (see the module docstring)."""
    if dim < 1:
        raise ParameterError("dim must be positive")
    if not (math.isfinite(l2_clip) and l2_clip > 0):
        raise ParameterError("l2_clip must be positive and finite")
    if not 1 <= fail_log2 <= 256:
        raise ParameterError("fail_log2 must be in [1, 256]")
    if gamma is None:
        gamma = l2_clip / max(64, math.ceil(4 * math.sqrt(dim)))
    if not (math.isfinite(gamma) and gamma > 0):
        raise ParameterError("gamma must be positive and finite")
    sens_sq = rounded_sensitivity_sq(l2_clip / gamma, dim, beta)
    sigma2 = share_sigma2(noise_multiplier, sens_sq, min_honest)
    if sigma2 < Fraction(1, 4):
        # The accounting's bound on a sum of discrete Gaussians [KLS21] is proven
        # for σ ≥ 1/2 only; below it the stated ε would not be what the noise gives.
        raise ParameterError(
            f"per-client noise σ² = {float(sigma2):.3g} (scaled) is below 1/4: "
            "raise the noise multiplier or use a smaller gamma"
        )
    plan = DdgPlan(
        dim=dim,
        l2_clip=l2_clip,
        gamma=gamma,
        beta=beta,
        noise_multiplier=noise_multiplier,
        min_honest=min_honest,
        sigma2=sigma2,
        sensitivity_sq=sens_sq,
        noise_bound=noise_bound(sigma2, dim, fail_log2),
        fail_log2=fail_log2,
    )
    if plan.levels > _MAX_LEVELS:
        raise ParameterError(
            f"{plan.levels} levels exceed 2^53: use a larger gamma or a smaller noise multiplier"
        )
    return plan
