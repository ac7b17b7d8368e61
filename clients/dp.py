"""A client daemon's distributed DP: plan per round, noisy levels, its own ledger.

The client derives the plan from its own settings and the round's threshold
(protocol/dp_round.py) and refuses a config that does not carry it. Each
completed round is charged with the survivors named in the unmasking request
minus the assumed colluders, so the reported ε is never below what the
accountant computes for the noise that actually reached the sum.

The charge is written to ``path`` (atomically, fsynced) after the unmasking
request is checked and *before* this client's unmasking shares leave it, and
the ledger is read back at start: a restart keeps what was spent, and an
unreadable ledger stops the daemon. A round whose worst-case charge (only t
survivors) would take ε past ``epsilon_budget`` is refused before the masked
input is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clients.state_file import read_record, write_record
from protocol.config import RoundConfig
from protocol.dp_round import plan_for_config, round_colluders
from secagg.dp import DdgPlan, PrivacyLedger, RoundPrivacy, privatize
from secagg.dp.accounting import DdgRound, ddg_epsilon, ddg_round
from secagg.errors import ParameterError
from secagg.rng import RandomSource

LEDGER_FILE = "dp-ledger.json"


@dataclass
class ClientDp:
    """Set from ``[client]`` dp_* settings; one per daemon."""

    noise_multiplier: float
    clip: float
    colluders: int = -1
    delta: float = 1e-5
    epsilon_budget: float = math.inf
    path: Path | None = None
    plan: DdgPlan | None = None
    ledger: PrivacyLedger | None = None
    _colluders_now: int = field(default=0, repr=False)
    _history: list[DdgRound] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.epsilon_budget > 0:
            raise ParameterError("dp_epsilon_budget must be positive")
        doc = read_record(self.path, "DP ledger") if self.path is not None else None
        if doc is not None:
            try:
                self._history = [
                    DdgRound(int(r["honest"]), float(r["l2_scale"]), float(r["tau"]), int(r["dim"]))
                    for r in doc["rounds"]
                ]
            except (KeyError, TypeError, ValueError) as exc:
                raise ParameterError(
                    f"DP ledger {self.path} is unreadable ({exc!r}); not starting"
                ) from exc

    @property
    def epsilon(self) -> float:
        """ε spent so far at ``delta``, restarts included."""
        return ddg_epsilon(self._history, self.delta)

    def prepare(self, config: RoundConfig) -> DdgPlan:
        """This round's plan; raises ParameterError when the config does not carry it."""
        self.plan = plan_for_config(
            config,
            l2_clip=self.clip,
            noise_multiplier=self.noise_multiplier,
            colluders=self.colluders,
        )
        n = len(config.clients)
        sparse = config.degree is not None and config.degree < n - 1
        self._colluders_now = round_colluders(n, self.colluders, sparse=sparse)
        return self.plan

    def budget_problem(self, config: RoundConfig) -> str | None:
        """Why this round could overspend (charged with only t survivors), or None."""
        assert self.plan is not None, "prepare() the round's plan first"
        worst = ddg_round(self.plan, config.threshold - self._colluders_now)
        after = ddg_epsilon([*self._history, worst], self.delta)
        if after > self.epsilon_budget:
            return (
                f"the distributed-DP budget ε = {self.epsilon_budget:g} would be exceeded "
                f"(spent {self.epsilon:.3g}, this round could bring it to {after:.3g})"
            )
        return None

    def levels(self, update: np.ndarray, rng: RandomSource) -> np.ndarray:
        """Clip (L2), round and add this client's noise share (secagg.dp.privatize)."""
        if self.plan is None:
            raise ParameterError("prepare() the round's plan first")
        return privatize(update, self.plan, rng)

    def record(self, survivors: int) -> RoundPrivacy:
        """Charge a round (survivors from the unmasking request), durably, before unmasking."""
        assert self.plan is not None
        if self.ledger is None:
            self.ledger = PrivacyLedger(
                self.plan,
                colluders=self._colluders_now,
                delta=self.delta,
                rounds=list(self._history),
            )
        self.ledger.plan, self.ledger.colluders = self.plan, self._colluders_now
        entry = self.ledger.record(survivors)
        self._history = list(self.ledger.rounds)
        if self.path is not None:
            rounds = [
                {"honest": r.honest, "l2_scale": r.l2_scale, "tau": r.tau, "dim": r.dim}
                for r in self._history
            ]
            write_record(self.path, {"version": 1, "rounds": rounds, "delta": self.delta})
        return entry
