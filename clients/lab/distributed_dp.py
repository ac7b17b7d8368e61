"""Distributed DP rounds for `secagg experiment` (secagg.dp on the in-memory protocol).

Each client clips its backbone update to L2 norm C, rounds it and adds its
discrete Gaussian share (:func:`secagg.dp.privatize`); the levels go through
the masked round (``secagg`` / ``secagg+``) or are summed in the clear
(``plain``: the same integers, so the two modes give bit-identical sums).
The server's step is the *unweighted* mean Σ/m over the m survivors: a
weighted mean would make the sensitivity depend on n_k.

Noise is planned for the protocol's minimum honest survivors, t − n_C (for
``plain``, where nobody may drop out, n − n_C), and every round is charged
with its actual survivors minus n_C in a :class:`secagg.dp.PrivacyLedger`.
Rows report ``dp_epsilon_round`` and ``dp_epsilon`` (cumulative), the
planned worst case over the whole run, and the noise multiplier the honest
shares carried.

``plain_mean`` here is the mean of the *clipped updates without noise*, so
the experiment's ``plain_step_accuracy`` shows what the same step would have
scored without DP; ``parity_max_abs_error`` compares the secure sum with the
same levels summed in the clear (bound 0: they must be equal).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocol.build import make_config
from protocol.config import RoundConfig, default_colluders
from protocol.graph import densest_harary_degree
from protocol.modes import build_config, names
from protocol.runner import run_round
from protocol.simulation import SimulationReport
from secagg.dp import (
    DdgPlan,
    PrivacyLedger,
    calibrate_plan,
    decode_sum,
    min_honest_survivors,
    plan_ddg,
    planned_epsilon,
    privatize,
)
from secagg.dp.encode import clip_l2
from secagg.errors import ParameterError
from secagg.rng import DeterministicRandomSource

DP_MODES = names("dp")


@dataclass(frozen=True)
class DpOptions:
    """What the operator asks for: a target ε or a noise multiplier z (one of them)."""

    epsilon: float = 0.0  # total over the run, at ``delta``; 0 = use noise_multiplier
    noise_multiplier: float = 0.0  # z for the honest minimum; 0 with epsilon 0 = DP off
    clip: float = 1.0  # L2 clip C of each client's update
    delta: float = 1e-5
    colluders: int | None = None  # n_C; None = the protocol's default assumption

    @property
    def enabled(self) -> bool:
        """Whether distributed DP is on."""
        return self.epsilon > 0 or self.noise_multiplier > 0

    def check(self, *, mode: str, clients: int) -> None:
        """Refuse inconsistent options with a message that says which."""
        if self.epsilon < 0 or self.noise_multiplier < 0:
            raise ParameterError("--dp-epsilon and --dp-noise-multiplier must be ≥ 0")
        if self.epsilon > 0 and self.noise_multiplier > 0:
            raise ParameterError("give --dp-epsilon or --dp-noise-multiplier, not both")
        if not self.enabled:
            return
        if mode not in DP_MODES:
            raise ParameterError(f"distributed DP runs in modes {DP_MODES}, not {mode!r}")
        if not self.clip > 0:
            raise ParameterError("--dp-clip must be positive")
        if not 0 < self.delta < 1:
            raise ParameterError("--dp-delta must be in (0, 1)")
        if self.colluders is not None and not 0 <= self.colluders < clients:
            raise ParameterError("--dp-colluders must be in [0, clients)")


@dataclass(frozen=True)
class Aggregate:
    """One round's weighted mean, what it cost, and how far it is from the plaintext mean.

    The lab's one aggregate type: the experiment's modes and distributed DP
    (where ``plain_mean`` is the same mean without noise) both return it.
    """

    mean: np.ndarray
    plain_mean: np.ndarray
    crypto_s: float = 0.0
    bytes_up_per_client: float = 0.0
    parity_max_abs_error: float | None = None
    parity_bound: float | None = None


def _sum_levels(levels: list[np.ndarray]) -> np.ndarray:
    """Σ levels in the clear (uint64: the plan's modulus bits guarantee no wrap)."""
    total = np.zeros(levels[0].size, dtype=np.uint64)
    for item in levels:
        total += item
    return total


def _degree(mode: str, clients: int) -> int | None:
    """The experiment's graph: complete for secagg, a Harary graph for secagg+."""
    return None if mode != "secagg+" else densest_harary_degree(clients)


@dataclass
class DistributedDp:
    """One run's plan, ledger and per-round privatise → aggregate step."""

    options: DpOptions
    mode: str
    clients: int
    rounds: int
    dim: int
    colluders: int
    plan: DdgPlan
    ledger: PrivacyLedger
    last: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls, options: DpOptions, *, mode: str, clients: int, rounds: int, dim: int
    ) -> DistributedDp:
        """Fix the plan (calibrated to ``options.epsilon`` when given) for the run."""
        options.check(mode=mode, clients=clients)
        degree = _degree(mode, clients)
        sparse = degree is not None and degree < clients - 1
        colluders = (
            default_colluders(clients, sparse=sparse)
            if options.colluders is None
            else options.colluders
        )
        if mode == "plain":
            threshold = clients  # no dropout tolerance: everyone contributes
        else:
            threshold = make_config(clients=clients, dim=1, degree=degree).threshold
        h_min = min_honest_survivors(threshold, colluders)
        if options.epsilon > 0:
            plan = calibrate_plan(
                options.epsilon,
                rounds=rounds,
                dim=dim,
                l2_clip=options.clip,
                min_honest=h_min,
                delta=options.delta,
            )
        else:
            plan = plan_ddg(
                dim=dim,
                l2_clip=options.clip,
                noise_multiplier=options.noise_multiplier,
                min_honest=h_min,
            )
        ledger = PrivacyLedger(plan, colluders=colluders, delta=options.delta)
        return cls(options, mode, clients, rounds, dim, colluders, plan, ledger)

    def summary(self) -> dict[str, Any]:
        """The run's public DP parameters (for report.json)."""
        return {
            "noise_multiplier": self.plan.noise_multiplier,
            "l2_clip": self.plan.l2_clip,
            "delta": self.options.delta,
            "colluders": self.colluders,
            "min_honest": self.plan.min_honest,
            "gamma": self.plan.gamma,
            "sigma2_per_client": str(self.plan.sigma2),
            "levels": self.plan.levels,
            "modulus_bits": self.plan.modulus_bits(self.clients),
            "epsilon_planned": planned_epsilon(self.plan, self.rounds, self.options.delta),
            "target_epsilon": self.options.epsilon or None,
        }

    def aggregate(self, updates: Mapping[int, np.ndarray], *, round_: int, seed: int) -> Aggregate:
        """Privatise every update, sum through the mode, charge the round."""
        keys = sorted(updates)
        if any(updates[k].size != self.dim for k in keys):
            raise ParameterError(
                f"distributed DP covers the {self.dim} shared parameters only; "
                "this method uploads extra coordinates"
            )
        rng = DeterministicRandomSource(f"experiment/dp/{seed}/{round_}")
        start = time.perf_counter()
        levels = {
            slot: privatize(updates[k], self.plan, rng.fork(str(k)))
            for slot, k in enumerate(keys, 1)
        }
        client_s = time.perf_counter() - start
        plain_total = _sum_levels(list(levels.values()))
        plain_sum = decode_sum(plain_total, len(levels), self.plan)
        clean = np.mean([clip_l2(updates[k], self.plan.l2_clip) for k in keys], axis=0)
        crypto_s, up, parity, bound = 0.0, 4.0 * self.dim, None, None
        noisy_sum, survivors = plain_sum, len(levels)
        if self.mode != "plain":
            config = build_config(
                self.mode,  # secagg+: the lab's degree (_degree)
                clients=self.clients,
                dim=self.dim,
                clip=self.plan.quantizer_clip,
                levels=self.plan.levels,
                max_weight=1,
                round_=round_,
                seed=str(seed).encode(),
            )
            assert isinstance(config, RoundConfig)
            start = time.perf_counter()
            round_report = run_round(self.mode, config, levels=levels, seed=seed * 1000 + round_)
            crypto_s = time.perf_counter() - start
            report: SimulationReport = round_report.detail  # SecAgg's own: the integer sum
            if report.result is None:
                raise RuntimeError(f"round {round_} aborted: {report.abort_reason}")
            survivors = report.result.weight_sum
            noisy_sum = decode_sum(report.result.total, survivors, self.plan)
            up = float(np.mean(list(report.bytes_up.values())))
            expected = _sum_levels([levels[c] for c in report.survivors])
            gap = np.abs(report.result.total.astype(np.int64) - expected.astype(np.int64))
            parity, bound = float(gap.max()) * self.plan.gamma, 0.0  # equal integer sums
        entry = self.ledger.record(survivors)
        self.last = {
            "dp_epsilon_round": entry.epsilon,
            "dp_epsilon": entry.epsilon_cumulative,
            "dp_delta": entry.delta,
            "dp_survivors": entry.survivors,
            "dp_honest": entry.honest,
            "dp_noise_multiplier": entry.noise_multiplier,
            "dp_client_s": client_s / len(levels),
        }
        return Aggregate(noisy_sum / survivors, clean, crypto_s, up, parity, bound)
