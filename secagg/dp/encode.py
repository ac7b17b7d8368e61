"""A client's float update → noisy integer levels, and the server's sum back to floats.

Client (:func:`privatize`, what the daemon calls before masking):

1. clip to L2 norm c (float; its rounding error does not matter, see 3);
2. scale by 1/γ;
3. conditional randomised rounding [KLS21]: round every coordinate up with
   probability equal to its fractional part, and retry the whole vector while
   ||z||² > ``plan.sensitivity_sq``; the check is on exact integers, so the
   sensitivity the accountant uses holds for every vector sent;
4. add N_Z(0, σ²) per coordinate from the exact sampler; a noise coordinate
   beyond ``plan.noise_bound`` (probability ≤ 2^−40 per round, independent of
   the data) makes the client refuse the round instead of risking a wrap;
5. offset by H = ``plan.half_range`` into the levels [0, 2H] the round config
   announces (``levels = plan.levels``, ``clip = plan.quantizer_clip``,
   weight 1), so masking, the no-wrap check and dequantisation are unchanged.

Server: the protocol's ``AggregateResult.weighted_sum()`` already returns
γ·Σ(z + noise) with that config; :func:`decode_sum` does the same for a plain
sum of levels.
"""

from __future__ import annotations

import numpy as np

from secagg.dp.plan import DdgPlan
from secagg.dp.sampler import discrete_gaussian
from secagg.errors import OverflowRisk, ParameterError
from secagg.rng import RandomSource

#: Retries of the conditional rounding; each succeeds with probability ≥ 1 − β.
MAX_ROUNDING_TRIES = 64


class NoiseTailExceeded(OverflowRisk):
    """A noise coordinate fell outside the planned bound: this client skips the round."""


def clip_l2(x: np.ndarray, clip: float) -> np.ndarray:
    """x scaled down to L2 norm ``clip`` if it is longer (float64 copy)."""
    v = np.array(x, dtype=np.float64)
    if v.ndim != 1:
        raise ParameterError("the update must be a vector")
    if not np.isfinite(v).all():
        raise ParameterError("the update contains NaN or infinity")
    norm = float(np.linalg.norm(v))
    if norm > clip:
        v *= clip / norm
    return v


def stochastic_round(rng: RandomSource, scaled: np.ndarray) -> np.ndarray:
    """Each coordinate to ⌊x⌋ or ⌊x⌋ + 1, up with probability frac(x) (to 2^−32), as int64."""
    low = np.floor(scaled)
    coin = np.frombuffer(rng.random_bytes(4 * scaled.size), dtype="<u4")
    up = coin < (scaled - low) * 4294967296.0
    out: np.ndarray = low.astype(np.int64) + up
    return out


def conditional_round(rng: RandomSource, scaled: np.ndarray, sensitivity_sq: int) -> np.ndarray:
    """Stochastic rounding, retried until ||z||² ≤ ``sensitivity_sq`` (exact integers)."""
    for _ in range(MAX_ROUNDING_TRIES):
        z = stochastic_round(rng, scaled)
        if int(np.dot(z, z)) <= sensitivity_sq:
            return z
    raise ParameterError(
        f"no rounding within the sensitivity bound after {MAX_ROUNDING_TRIES} tries: "
        "is the update clipped to the plan's l2_clip?"
    )


def privatize(update: np.ndarray, plan: DdgPlan, rng: RandomSource) -> np.ndarray:
    """One client's update → levels in [0, plan.levels − 1] (uint64) for ``set_levels``.

    Raises :class:`NoiseTailExceeded` (probability ≤ 2^−plan.fail_log2, data
    independent): the client then sits the round out.
    """
    x = clip_l2(update, plan.l2_clip)
    if x.size != plan.dim:
        raise ParameterError(f"the update has {x.size} coordinates, the plan {plan.dim}")
    z = conditional_round(rng, x / plan.gamma, plan.sensitivity_sq)
    noise = discrete_gaussian(rng, plan.sigma2, plan.dim)
    if plan.dim and int(np.abs(noise).max()) > plan.noise_bound:
        raise NoiseTailExceeded(
            f"a noise coordinate exceeds the bound {plan.noise_bound} "
            f"(probability ≤ 2^-{plan.fail_log2}); skip this round"
        )
    levels: np.ndarray = (z + noise + plan.half_range).astype(np.uint64)
    return levels


def decode_sum(total: np.ndarray, count: int, plan: DdgPlan) -> np.ndarray:
    """Σ of ``count`` clients' levels → γ·Σ(z + noise): the noisy sum of clipped updates."""
    if count < 0:
        raise ParameterError("count must be non-negative")
    levels = np.asarray(total, dtype=np.uint64)
    offset = count * plan.half_range
    if (levels.size and int(levels.max()) >= 1 << 62) or offset >= 1 << 62:
        signed = levels.astype(object) - offset  # exact beyond int64
    else:
        signed = levels.astype(np.int64) - np.int64(offset)
    out: np.ndarray = np.asarray(signed, dtype=np.float64) * plan.gamma
    return out
