"""The client daemon's part in homomorphic rounds (ckks, bfv-masked): the model lives here.

In HE mode the aggregator never sees the aggregate, so it cannot hold the
model: it serves θ₀ once, and each client keeps its own copy between rounds
(:class:`LocalModel`, in memory). Each round the daemon trains on that copy,
runs one :class:`protocol.he_flow.HEClientMachine` (its input bound to the
model's lineage, which must equal the announced one, and to the SHA-256 of
the model, which every member of the session must share), and when the
encrypted sum arrives it decrypts the weighted mean and takes the step
θ ← θ + η·mean itself (:mod:`protocol.he_model`).

A face-FL method rides on the same round. The HEStart carries its state
(the releases of the last round), bound into the announced hash
(:func:`protocol.method_messages.lineage_digest`), which the client
recomputes from its own lineage. FedFace's S never passes the aggregator:
the client encrypts [Δθ, S_k/n_k], steps θ with the first part of the
decrypted mean and recovers S = Σ_k S_k from the rest times the decrypted
weight sum (Σ n_k), kept in :attr:`LocalModel.moment` for its next round.

A bfv-masked round (:class:`HEMaskedRound`) is the same for the model and
its lineage; its machine is :class:`protocol.he_masked.HEMaskedClientMachine`
(SecAgg's masks inside BFV, so the key holder the server names cannot read
this client's upload), it takes integer levels or a float update, and it
carries no method state (FedAvg only).

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
from protocol.client import ClientPhase
from protocol.he_flow import HEClientMachine, HEPhase
from protocol.he_masked import HEMaskedClientMachine, HEMaskedServerMessage
from protocol.he_messages import (
    AnyClientMessage,
    HEConfig,
    HEMaskedConfig,
    HEMaskedStart,
    HEResult,
    HEServerMessage,
    HEStart,
)
from protocol.he_model import apply_mean, model_sha256, next_lineage, sum_digest
from protocol.messages import ClientAbort, ServerAbort
from protocol.method_messages import lineage_digest
from protocol.policy import ClientPolicy
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
    #: FedFace: S = Σ_k S_k recovered from the last sum applied (float32 bytes; else empty).
    moment: bytes = b""

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
        #: What this client expects the config to announce: its lineage, bound to the state.
        self.expected = lineage_digest(local.lineage, start.state)
        self.mean: np.ndarray | None = None
        self._dump_dir = dump_dir
        self._server_aborted = False
        self.machine = HEClientMachine(client_id, rng=rng, signing_key=signing_key, roster=roster)
        if update is not None:  # None: the model is behind, so the machine refuses the start
            assert update.vector is not None
            self.machine.set_input(
                update.vector,
                weight=update.weight,
                model_hash=self.expected,
                model_sha256=model_sha256(local.model),
            )

    @staticmethod
    def current(local: LocalModel, start: HEStart) -> bool:
        """Whether the round announces this client's model and the state it carries."""
        return lineage_digest(local.lineage, start.state) == start.config.model_hash

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
        if isinstance(msg, HEStart) and msg.config.model_hash != self.expected:
            log.warning(
                "client %d: round %d announces another model lineage or method state: this "
                "client's model is behind (it missed a round), or it was shown another state; "
                "it sits the round out",
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
        theta = self.local.model.size
        assert mean.size >= theta  # the machine took an input of config.dim ≥ θ's size
        self.local.model = apply_mean(self.local.model, mean[:theta], self.config.learning_rate)
        weight_sum = self.machine.weight_sum
        assert weight_sum is not None
        extra = mean[theta:] * weight_sum  # Σ_k n_k·(S_k/n_k) = S, as the SecAgg server does
        self.local.moment = extra.astype("<f4").tobytes() if extra.size else b""
        self.local.lineage = next_lineage(
            self.local.lineage, self.config.round, sum_digest(msg.blobs)
        )
        if self._dump_dir is not None:  # debugging and tests: the client's own disk only
            self._dump_dir.mkdir(parents=True, exist_ok=True)
            np.save(self._dump_dir / f"he-mean-{self.config.round:06d}.npy", mean)


class HEMaskedRound:
    """One bfv-masked round on this client; the daemon drives it like its SecAgg machine.

    The caller has checked the policy and that the round announces this
    client's lineage. ``mean`` holds the decrypted weighted mean once the
    round completed, and by then ``local`` has taken the step.
    """

    def __init__(
        self,
        client_id: int,
        start: HEMaskedStart,
        local: LocalModel,
        update: LocalUpdate,
        *,
        rng: RandomSource,
        signing_key: SigningKey,
        roster: dict[int, bytes],
        policy: ClientPolicy,
        dump_dir: Path | None = None,
    ) -> None:
        self.client_id = client_id
        self.config: HEMaskedConfig = start.config
        self.local = local
        self.mean: np.ndarray | None = None
        self._dump_dir = dump_dir
        self.machine = HEMaskedClientMachine(
            client_id, rng=rng, signing_key=signing_key, roster=roster, policy=policy
        )
        expected = local.lineage  # the machine refuses a config that announces another
        if update.levels is not None:
            self.machine.set_levels(update.levels, weight=update.weight, model_hash=expected)
        else:
            assert update.vector is not None
            self.machine.set_input(update.vector, weight=update.weight, model_hash=expected)

    @property
    def phase(self) -> ClientPhase:
        """The machine's phase (COMPLETED once the sum is decrypted and applied)."""
        return self.machine.phase

    @property
    def abort_reason(self) -> str | None:
        """Why the round ended early, if it did."""
        return self.machine.abort_reason

    def handle(self, msg: HEMaskedServerMessage) -> list[AnyClientMessage]:
        """One server message in, replies out (the machine sends its own ClientAbort)."""
        was = self.machine.phase
        replies: list[AnyClientMessage] = [*self.machine.handle(msg)]
        if self.machine.phase is ClientPhase.COMPLETED and was is not ClientPhase.COMPLETED:
            assert isinstance(msg, HEResult)
            self._apply(msg)
        return replies

    def abort(self, reason: str) -> list[AnyClientMessage]:
        """Leave the round (a message that did not decode); the abort to tell the server."""
        return [*self.machine.abort(reason)]

    def _apply(self, msg: HEResult) -> None:
        mean, total = self.machine.result, self.machine.total
        assert mean is not None and total is not None
        self.mean = mean
        theta = self.local.model.size
        self.local.model = apply_mean(self.local.model, mean[:theta], self.config.learning_rate)
        self.local.lineage = next_lineage(
            self.local.lineage, self.config.round, sum_digest(msg.blobs)
        )
        if self._dump_dir is not None:  # debugging and tests: the client's own disk only
            self._dump_dir.mkdir(parents=True, exist_ok=True)
            round_ = self.config.round
            np.save(self._dump_dir / f"he-mean-{round_:06d}.npy", mean)
            np.save(self._dump_dir / f"he-total-{round_:06d}.npy", total.astype(np.uint64))
            weight = self.machine.weight_sum
            (self._dump_dir / f"he-weight-{round_:06d}.txt").write_text(f"{weight}\n")
