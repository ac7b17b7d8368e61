"""Distributed differential privacy for secure aggregation.

Clients clip, round and add exact discrete Gaussian noise before masking
(:mod:`secagg.dp.encode`), with public parameters fixed by a plan
(:mod:`secagg.dp.plan`); the accountant (:mod:`secagg.dp.accounting`) turns
the honest survivors of every round into ε with Google's dp-accounting.
The sampler (:mod:`secagg.dp.sampler`) uses integers only.
"""

from secagg.dp.accounting import (
    DEFAULT_DELTA,
    PrivacyLedger,
    RoundPrivacy,
    calibrate_plan,
    ddg_epsilon,
    ddg_round,
    effective_noise_multiplier,
    gaussian_epsilon,
    planned_epsilon,
    survivors_epsilon,
)
from secagg.dp.encode import NoiseTailExceeded, decode_sum, privatize
from secagg.dp.plan import DdgPlan, min_honest_survivors, plan_ddg
from secagg.dp.sampler import discrete_gaussian

__all__ = [
    "DEFAULT_DELTA",
    "DdgPlan",
    "NoiseTailExceeded",
    "PrivacyLedger",
    "RoundPrivacy",
    "calibrate_plan",
    "ddg_epsilon",
    "ddg_round",
    "decode_sum",
    "discrete_gaussian",
    "effective_noise_multiplier",
    "gaussian_epsilon",
    "min_honest_survivors",
    "plan_ddg",
    "planned_epsilon",
    "privatize",
    "survivors_epsilon",
]
