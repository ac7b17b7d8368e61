"""A client daemon's distributed DP: plan per round, noisy levels, its own ledger.

The client derives the plan from its own settings and the round's threshold
(protocol/dp_round.py) and refuses a config that does not carry it. Each
completed round is charged with the survivors named in the unmasking request
minus the assumed colluders, so the reported ε is never below what the
accountant computes for the noise that actually reached the sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from protocol.config import RoundConfig
from protocol.dp_round import plan_for_config, round_colluders
from secagg.dp import DdgPlan, PrivacyLedger, RoundPrivacy, privatize
from secagg.errors import ParameterError
from secagg.rng import RandomSource


@dataclass
class ClientDp:
    """Set from ``[client]`` dp_* settings; one per daemon."""

    noise_multiplier: float
    clip: float
    colluders: int = -1
    delta: float = 1e-5
    plan: DdgPlan | None = None
    ledger: PrivacyLedger | None = None
    _colluders_now: int = field(default=0, repr=False)

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

    def levels(self, update: np.ndarray, rng: RandomSource) -> np.ndarray:
        """Clip (L2), round and add this client's noise share (secagg.dp.privatize)."""
        if self.plan is None:
            raise ParameterError("prepare() the round's plan first")
        return privatize(update, self.plan, rng)

    def record(self, survivors: int) -> RoundPrivacy:
        """Charge a completed round (survivors from the unmasking request)."""
        assert self.plan is not None
        if self.ledger is None:
            self.ledger = PrivacyLedger(self.plan, colluders=self._colluders_now, delta=self.delta)
        self.ledger.plan, self.ledger.colluders = self.plan, self._colluders_now
        return self.ledger.record(survivors)
