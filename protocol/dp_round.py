"""Distributed DP over the service: the plan both sides derive for one round.

The plan (secagg.dp) is public and must be the same on every client and on
the aggregator. Each side derives it from its own settings and the round's
threshold, so the round config only carries what the plan fixes (levels,
clip and weight 1); a client whose own plan disagrees with the config refuses
the round, so an aggregator cannot shrink the noise by announcing other
numbers.
"""

from __future__ import annotations

from protocol.config import RoundConfig, default_colluders
from secagg.dp import DdgPlan, min_honest_survivors, plan_ddg
from secagg.errors import ParameterError


def round_colluders(clients: int, configured: int, *, sparse: bool = False) -> int:
    """n_C for a round: the configured value, or the protocol's default when negative."""
    return default_colluders(clients, sparse=sparse) if configured < 0 else configured


def round_plan(
    *,
    dim: int,
    clients: int,
    threshold: int,
    l2_clip: float,
    noise_multiplier: float,
    colluders: int,
) -> DdgPlan:
    """Noise sized for the t − n_C honest survivors a completed round always has."""
    return plan_ddg(
        dim=dim,
        l2_clip=l2_clip,
        noise_multiplier=noise_multiplier,
        min_honest=min_honest_survivors(threshold, colluders),
    )


def plan_for_config(
    config: RoundConfig, *, l2_clip: float, noise_multiplier: float, colluders: int
) -> DdgPlan:
    """This client's plan for ``config`` (its own settings, the round's threshold), checked."""
    n = len(config.clients)
    sparse = config.degree is not None and config.degree < n - 1
    plan = round_plan(
        dim=config.dim,
        clients=n,
        threshold=config.threshold,
        l2_clip=l2_clip,
        noise_multiplier=noise_multiplier,
        colluders=round_colluders(n, colluders, sparse=sparse),
    )
    check_config(config, plan)
    return plan


def check_config(config: RoundConfig, plan: DdgPlan) -> None:
    """Refuse a round whose config does not carry this client's own plan."""
    if config.dim != plan.dim:
        raise ParameterError(f"the round has {config.dim} coordinates, the DP plan {plan.dim}")
    if config.levels != plan.levels or config.clip != plan.quantizer_clip:
        raise ParameterError(
            "the round's quantiser does not match this client's DP plan "
            f"(levels {config.levels} vs {plan.levels}, clip {config.clip} vs "
            f"{plan.quantizer_clip}): refusing, the noise would not be what was agreed"
        )
    if config.max_weight != 1:
        raise ParameterError("distributed DP rounds weight every client 1")
