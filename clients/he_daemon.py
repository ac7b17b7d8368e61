"""The client daemon's part in homomorphic (CKKS) rounds: the model lives here.

In HE mode the aggregator never sees the aggregate, so it cannot hold the
model: it serves θ₀ once, and each client keeps its own copy between rounds
(:class:`LocalModel`, in memory). Each round the daemon trains on that copy,
runs one :class:`protocol.he_flow.HEClientMachine` (its input bound to the
model's lineage, which must equal the announced one, and to the SHA-256 of
the model, which every member of the session must share), and when the
encrypted sum arrives it decrypts the weighted mean and takes the step
θ ← θ + η·mean itself (:mod:`protocol.he_model`).

A client whose model is not the announced one (it missed a round, or
restarted and lost its copy) tells the aggregator with a ClientAbort and
sits the round out; the aggregator leaves it out of later cohorts.
Recovering its model from a peer is not built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clients.training.synthetic import LocalUpdate
from protocol.he_flow import HEClientMachine, HEPhase
from protocol.he_messages import (
    AnyClientMessage,
    HEConfig,
    HEResult,
    HEServerMessage,
    HEStart,
)
from protocol.he_model import apply_mean, model_sha256, next_lineage, sum_digest
from protocol.messages import ClientAbort, ServerAbort
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey
from secagg.rng import RandomSource

log = logging.getLogger("secagg.client")
Trainer = Callable[[np.ndarray, int], LocalUpdate]


@dataclass
class LocalModel:
    """This client's model between HE rounds and the lineage it computed for it."""

    model: np.ndarray  # float32
    lineage: bytes

    @classmethod
    def initial(cls, raw: bytes) -> LocalModel:
        """θ₀ as downloaded; its lineage is its hash, which the round-0 config announces."""
        model = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        return cls(model, model_sha256(model))


class HERound:
    """One HE round on this client; the daemon drives it like its SecAgg machine.

    ``phase`` is the machine's; ``mean`` holds the decrypted weighted mean once
    the round completed, and by then ``local`` has taken the step.
    """

    def __init__(
        self,
        client_id: int,
        start: HEStart,
        local: LocalModel,
        update: LocalUpdate | None,
        *,
        rng: RandomSource,
        signing_key: SigningKey | None,
        roster: dict[int, bytes],
        dump_dir: Path | None = None,
    ) -> None:
        if update is not None and update.vector is None:
            raise ParameterError("CKKS rounds take float updates (exact_levels is for SecAgg)")
        self.client_id = client_id
        self.config: HEConfig = start.config
        self.local = local
        self.mean: np.ndarray | None = None
        self._dump_dir = dump_dir
        self._server_aborted = False
        self.machine = HEClientMachine(client_id, rng=rng, signing_key=signing_key, roster=roster)
        if update is not None:  # None: the model is behind, so the machine refuses the start
            assert update.vector is not None
            self.machine.set_input(
                update.vector,
                weight=update.weight,
                model_hash=local.lineage,
                model_sha256=model_sha256(local.model),
            )

    @staticmethod
    def current(local: LocalModel, start: HEStart) -> bool:
        """Whether this client's model is the one the round announces (else: no training)."""
        return local.lineage == start.config.model_hash

    @property
    def phase(self) -> HEPhase:
        """The machine's phase."""
        return self.machine.phase

    @property
    def abort_reason(self) -> str | None:
        """Why the round ended early, if it did."""
        return self.machine.abort_reason

    def handle(self, msg: HEServerMessage) -> list[AnyClientMessage]:
        """One server message in, replies out; a client-side abort is told to the server."""
        if isinstance(msg, HEStart) and msg.config.model_hash != self.local.lineage:
            log.warning(
                "client %d: round %d announces another model lineage: this client's model "
                "is behind (it missed a round) and sits the round out",
                self.client_id,
                self.config.round,
            )
        was = self.machine.phase
        replies: list[AnyClientMessage] = [*self.machine.handle(msg)]
        if isinstance(msg, ServerAbort):
            self._server_aborted = True
        if self.machine.phase is HEPhase.COMPLETED and was is not HEPhase.COMPLETED:
            assert isinstance(msg, HEResult)
            self._apply(msg)
        elif (
            self.machine.phase is HEPhase.ABORTED
            and was is not HEPhase.ABORTED
            and not self._server_aborted
            and was is not HEPhase.RESULT  # after the upload there is nothing to withdraw
        ):
            reason = self.machine.abort_reason or "aborted"
            replies.append(ClientAbort(self.client_id, self.config.round, reason[:200]))
        return replies

    def _apply(self, msg: HEResult) -> None:
        mean = self.machine.result
        assert mean is not None
        self.mean = mean
        self.local.model = apply_mean(self.local.model, mean, self.config.learning_rate)
        self.local.lineage = next_lineage(
            self.local.lineage, self.config.round, sum_digest(msg.blobs)
        )
        if self._dump_dir is not None:  # debugging and tests: the client's own disk only
            self._dump_dir.mkdir(parents=True, exist_ok=True)
            np.save(self._dump_dir / f"he-mean-{self.config.round:06d}.npy", mean)
