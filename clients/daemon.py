"""The client protocol daemon: poll, train, mask, upload, unmask, repeat.

One :class:`ClientMachine` per round. On ``RoundStart`` the daemon downloads
the global model, hashes it (the machine aborts if the hash differs from the
announced config, so a server cannot show this client another model), runs
the training hook and fixes the input, once; every later server message goes
straight to the machine, and whatever it returns goes back to the server.

A face-FL method (docs/client-daemon.md) rides on the same round: the
RoundStart names it and carries its state, which the model hash binds; the
daemon refuses a round of another method, hands the state to the trainer
before training, and sends the trainer's DP cluster release, if any, right
after it (request-signed like every Submit). In ckks rounds the HEStart
carries the state instead, bound into the announced lineage, and FedFace's
S is the one this client recovered from its last decrypted sum
(:mod:`clients.he_daemon`). A bfv-masked round (HEMaskedStart) is checked
against the policy as that mode, the lineage and the ledger before anything
is trained or sent, then runs :class:`clients.he_daemon.HEMaskedRound`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np

from clients.faults import fault_point
from clients.ledger import ContributionLedger
from clients.training.synthetic import LocalUpdate
from clients.transport import Transport
from protocol.client import ClientMachine, ClientPhase
from protocol.he_messages import HEMaskedStart, HEStart, HEUpload
from protocol.messages import ClientAbort, MaskedInput, RoundStart, UnmaskRequest
from protocol.method_messages import ClusterRelease, bound_model_hash
from protocol.plain import PlainClient
from protocol.policy import ClientPolicy, mode_of
from secagg.errors import ParameterError, SecAggError
from secagg.primitives.signing import SigningKey
from secagg.rng import RandomSource, SystemRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb

if TYPE_CHECKING:
    from clients.dp import ClientDp  # dp-accounting: loaded only when DP is configured
    from clients.he_daemon import (  # TenSEAL: loaded by HE rounds only
        HEMaskedRound,
        HERound,
        LocalModel,
    )
    from secagg.dp import RoundPrivacy

log = logging.getLogger("secagg.client")
Trainer = Callable[[np.ndarray, int], LocalUpdate]
RoundReport = Callable[[dict[str, object]], None]


#: What a trainer's ``last`` may add to this client's own metrics file (never sent).
LOCAL_FIGURES = (
    "method",
    "dplc_releases",
    "dplc_epsilon",
    "dplc_epsilon_round",
    "dplc_delta",
    "fedface_releases",
    "fedface_epsilon",
    "fedface_sigma",
)


@dataclass
class DaemonStats:
    """What the daemon did, for logs and tests."""

    rounds_completed: list[int] = field(default_factory=list)
    rounds_aborted: list[tuple[int, str]] = field(default_factory=list)


class Daemon:
    """Runs rounds until the aggregator says training is finished."""

    def __init__(
        self,
        client_id: int,
        transport: Transport,
        trainer: Trainer,
        *,
        signing_key: SigningKey | None,
        roster: dict[int, bytes],
        policy: ClientPolicy | None = None,
        ledger: ContributionLedger | None = None,
        rng: RandomSource | None = None,
        poll_timeout: float = 30.0,
        max_rounds: int | None = None,
        on_round: RoundReport | None = None,
        dump_dir: Path | None = None,
        dp: ClientDp | None = None,
        method: str = "fedavg",
    ) -> None:
        self.client_id = client_id
        #: The face-FL method this client runs; rounds of another are refused.
        self.method = method
        self.transport = transport
        self.trainer = trainer
        self.signing_key = signing_key
        self.roster = roster
        #: This client's own policy (protocol/policy.py); the server can change none of it.
        self.policy = policy or ClientPolicy()
        #: The differencing rule's ledger (clients/ledger.py); in memory unless given.
        self.ledger = ledger or ContributionLedger()
        self.rng = rng or SystemRandomSource()
        self.poll_timeout = poll_timeout
        self.max_rounds = max_rounds
        self.stats = DaemonStats()
        self.on_round = on_round
        self._times = {"train_s": 0.0, "crypto_s": 0.0, "network_s": 0.0}
        self._bytes_up = 0
        self._info: dict[str, object] = {}
        self._machine: ClientMachine | PlainClient | HERound | HEMaskedRound | None = None
        self._round = -1
        #: HE rounds: this client's own model between rounds (the aggregator has none).
        self._he_local: LocalModel | None = None
        #: Debugging and tests only: HE rounds write each decrypted mean here.
        self._dump_dir = dump_dir
        #: Distributed DP (clients/dp.py): noisy levels instead of the update.
        self.dp = dp
        self._survivors = 0
        #: This round's distributed-DP charge (made before the unmasking shares leave).
        self._dp_entry: RoundPrivacy | None = None
        self._dp_pending = False
        #: The base model of the running masked round (the ledger's key).
        self._model_hash: bytes | None = None

    def run(self) -> DaemonStats:
        """Loop until the aggregator reports that training is finished."""
        epoch = seq = 0
        while True:
            reply = self.transport.poll(epoch, seq, timeout=self.poll_timeout)
            if reply.finished:
                self._close_round()
                return self.stats
            if reply.epoch != epoch:  # a new round attempt: whatever ran before is over
                self._close_round()
                epoch, seq = reply.epoch, 0
            if not reply.HasField("message"):
                continue
            seq = reply.seq
            try:
                self._handle(codec.any_server_from_proto(reply.message))
            except grpc.RpcError:
                raise  # the transport gave up (after its retries): the caller decides
            except Exception as exc:
                # A message that does not decode (an invalid config, a malformed field)
                # or breaks anything downstream ends this round for this client only.
                reason = f"unusable server message ({type(exc).__name__}: {exc})"
                self._tell_masked_abort(reply.message, reason)
                self._abandon(reason)
            if self.max_rounds is not None and len(self.stats.rounds_completed) >= self.max_rounds:
                return self.stats

    def _handle(self, msg: object) -> None:
        if isinstance(msg, RoundStart):
            self._close_round()
            try:
                self._start_round(msg)
            except SecAggError as exc:  # e.g. a model that does not fit the config
                self._abandon(f"cannot join: {exc}")
                return
        elif isinstance(msg, HEStart):
            self._close_round()
            try:
                self._start_he_round(msg)
            except SecAggError as exc:
                self._abandon(f"cannot join: {exc}")
                return
        elif isinstance(msg, HEMaskedStart):
            self._close_round()
            try:
                self._start_masked_he_round(msg)
            except SecAggError as exc:
                self._refuse(msg.config.round, f"cannot join: {exc}")
                return
        machine = self._machine
        if machine is None:
            return
        if isinstance(msg, UnmaskRequest):  # who is in the sum: what the DP ledger charges
            self._survivors = len(msg.survivors)
        start = time.perf_counter()
        replies = machine.handle(msg)  # type: ignore[arg-type]
        self._times["crypto_s"] += time.perf_counter() - start
        if isinstance(msg, UnmaskRequest) and self._dp_pending and replies:
            # The unmasking shares release the noisy sum: charge it durably first (once).
            assert self.dp is not None
            if machine.phase.value != ClientPhase.ABORTED.value:
                self._dp_entry = self.dp.record(self._survivors)
                self._dp_pending = False
        for out in replies:
            if isinstance(out, MaskedInput | HEUpload) and self._model_hash is not None:
                self.ledger.contribute(self._model_hash)  # durably, before it leaves
            fault_point(f"before_send_{type(out).__name__}", self._round)
            start = time.perf_counter()
            try:
                self.transport.send(out)
                self._times["network_s"] += time.perf_counter() - start
                self._bytes_up += _wire_size(out)
            except grpc.RpcError as exc:
                # Final refusals (after retries): e.g. ALREADY_EXISTS when this daemon
                # restarted mid-session with new keys. Never re-mask: leave the session.
                self._abandon(f"{exc.code()}: {exc.details()}")
                return
        if machine.phase.value == ClientPhase.COMPLETED.value:  # SecAgg's or an HE round's
            self.stats.rounds_completed.append(self._round)
            log.info("client %d: round %d completed", self.client_id, self._round)
            self._report()
            self._machine = None
        elif machine.phase.value == ClientPhase.ABORTED.value:
            self.stats.rounds_aborted.append((self._round, machine.abort_reason or ""))
            log.warning(
                "client %d: round %d aborted: %s", self.client_id, self._round, machine.abort_reason
            )
            self._machine = None

    def _fresh_he_round(self) -> LocalModel:
        """Reset this round's figures; fetch θ₀ once: in HE modes the model lives here."""
        from clients.he_daemon import LocalModel  # TenSEAL: loaded by HE rounds only

        self._times = dict.fromkeys(self._times, 0.0)
        self._bytes_up = 0
        if self._he_local is None:
            start = time.perf_counter()
            self._he_local = LocalModel.initial(self.transport.model(0))
            self._times["network_s"] += time.perf_counter() - start
        return self._he_local

    def _refusal(self, config_problem: str | None, model_hash: bytes, nonce: bytes) -> str | None:
        """Why this client sits a round out: its policy, then the differencing ledger."""
        if config_problem:
            return f"refused by this client's policy: {config_problem}"
        problem = self.ledger.admit(model_hash, nonce, max_attempts=self.policy.max_attempts)
        return f"refused by this client's policy: {problem}" if problem else None

    def _refuse(self, round_: int, reason: str) -> None:
        """Tell the server (a typed abort) and leave the round; nothing secret was made."""
        try:
            self.transport.send(ClientAbort(self.client_id, max(round_, 0), reason))
        except grpc.RpcError as exc:
            log.info("client %d: abort not delivered: %s", self.client_id, exc.code())
        self._abandon(reason)

    def _start_round(self, msg: RoundStart) -> None:
        config = msg.config
        self._round = config.round
        self._model_hash = None
        problem = self._refusal(
            self.policy.check(config, roster_size=len(self.roster)),
            config.model_hash,
            config.nonce,
        )
        if problem:  # before the model is downloaded or anything is trained
            self._refuse(config.round, problem)
            return
        if mode_of(config) != "plain":
            self._model_hash = config.model_hash
        theirs = msg.state.method if msg.state is not None else "fedavg"
        if theirs != self.method:
            raise ParameterError(
                f"the aggregator runs method {theirs!r}, this client is configured for "
                f"{self.method!r} ([client.training] method): not joining"
            )
        machine: ClientMachine | PlainClient
        if config.profile == "plain":
            machine = PlainClient(self.client_id, policy=self.policy)
        else:
            machine = ClientMachine(
                self.client_id,
                rng=self.rng,
                signing_key=self.signing_key,
                roster=self.roster,
                policy=self.policy,
            )
        self._times = dict.fromkeys(self._times, 0.0)
        self._bytes_up = 0
        self._survivors = 0
        self._dp_entry, self._dp_pending = None, False
        start = time.perf_counter()
        raw = self.transport.model(config.round)
        self._times["network_s"] += time.perf_counter() - start
        model = np.frombuffer(raw, dtype="<f4")
        receive = getattr(self.trainer, "receive", None)
        if msg.state is not None and receive is not None:
            receive(msg.state)
        start = time.perf_counter()
        update = self.trainer(model.copy(), config.round)
        self._times["train_s"] += time.perf_counter() - start
        self._info = dict(getattr(self.trainer, "last", None) or {})
        digest = bound_model_hash(raw, msg.state)  # binds the state the trainer used
        if update.release is not None and not self._send_release(update.release):
            return
        start = time.perf_counter()
        if self.dp is not None:
            if not isinstance(machine, ClientMachine) or update.vector is None:
                raise ParameterError("distributed DP needs a masked round and a float update")
            self.dp.prepare(config)  # refuses a config that does not carry this client's plan
            over = self.dp.budget_problem(config)
            if over:  # before the masked input (or anything secret) leaves
                self._refuse(config.round, f"refused by this client's policy: {over}")
                return
            levels = self.dp.levels(update.vector, self.rng)  # NoiseTailExceeded: sit out
            self._dp_pending = True
            machine.set_levels(levels, weight=1, model_hash=digest)
        elif update.levels is not None:
            machine.set_levels(update.levels, weight=update.weight, model_hash=digest)
        else:
            assert update.vector is not None
            machine.set_input(update.vector, weight=update.weight, model_hash=digest)
        self._times["crypto_s"] += time.perf_counter() - start
        self._machine = machine

    def _start_he_round(self, msg: HEStart) -> None:
        """Train on this client's own model (θ₀ from the aggregator the first time).

        A method's state comes with the HEStart (bound into the announced
        lineage); FedFace's S is this client's own, from the last sum it applied.
        """
        from clients.he_daemon import HERound

        self._round = msg.config.round
        self._model_hash = None
        config = msg.config
        problem = self.policy.mode_problem(config.scheme, None) or self.policy.cohort_problem(
            len(config.clients), len(self.roster)
        )
        if problem:  # plain CKKS/BFV: the key holder the server names could decrypt
            self._refuse(config.round, f"refused by this client's policy: {problem}")
            return
        state = msg.state
        theirs = state.method if state is not None else "fedavg"
        if theirs != self.method:
            raise ParameterError(
                f"the aggregator runs method {theirs!r}, this client is configured for "
                f"{self.method!r} ([client.training] method): not joining"
            )
        if state is not None and state.moment:
            raise ParameterError("in ckks rounds S comes from the sum this client decrypts")
        if self.dp is not None:  # never train and upload without the noise this client plans
            raise ParameterError("distributed DP runs in masked rounds only, not in ckks rounds")
        local = self._fresh_he_round()
        update = None
        if HERound.current(local, msg):  # a model that is behind is not trained on
            problem = self._refusal(None, config.model_hash, config.nonce)
            if problem:  # the differencing rule: at most one upload per model (and lineage)
                self._refuse(config.round, problem)
                return
            self._model_hash = config.model_hash  # contributed before the HEUpload leaves
            receive = getattr(self.trainer, "receive", None)
            if state is not None and receive is not None:
                if local.moment:  # FedFace: S recovered from the last sum this client applied
                    state = dataclasses.replace(state, moment=local.moment)
                receive(state)
            start = time.perf_counter()
            update = self.trainer(local.model.copy(), msg.config.round)
            self._times["train_s"] += time.perf_counter() - start
            self._info = dict(getattr(self.trainer, "last", None) or {})
            if update.release is not None and not self._send_release(update.release):
                return
        start = time.perf_counter()
        self._machine = HERound(
            self.client_id,
            msg,
            local,
            update,
            rng=self.rng,
            signing_key=self.signing_key,
            roster=self.roster,
            dump_dir=self._dump_dir,
        )
        self._times["crypto_s"] += time.perf_counter() - start

    def _start_masked_he_round(self, msg: HEMaskedStart) -> None:
        """A bfv-masked round: the policy (as that mode), the lineage, the ledger, then train.

        Nothing leaves before the policy and the ledger admitted the round: a
        refusal is one ClientAbort naming the rule.
        """
        from clients.he_daemon import HEMaskedRound

        config = msg.config
        self._round = config.round
        self._model_hash = None
        problem = self.policy.check(config.secagg(), roster_size=len(self.roster), hybrid=True)
        if problem:  # before the model is downloaded or anything is trained
            self._refuse(config.round, f"refused by this client's policy: {problem}")
            return
        if self.method != "fedavg":
            raise ParameterError(
                f"the aggregator runs bfv-masked FedAvg, this client is configured for "
                f"{self.method!r} ([client.training] method): not joining"
            )
        if self.dp is not None:  # never train and upload without the noise this client plans
            raise ParameterError("distributed DP runs in masked rounds only, not in bfv-masked")
        if self.signing_key is None:
            raise ParameterError("bfv-masked rounds are signed: this client has no signing key")
        local = self._fresh_he_round()
        if local.lineage != config.model_hash:
            self._refuse(
                config.round,
                "this client's model is behind the announced lineage (it missed a round's "
                "sum): it sits the round out",
            )
            return
        problem = self._refusal(None, config.model_hash, config.nonce)
        if problem:  # the differencing rule, before any key is made
            self._refuse(config.round, problem)
            return
        self._model_hash = config.model_hash  # contributed before the MaskedInput leaves
        start = time.perf_counter()
        update = self.trainer(local.model.copy(), config.round)
        self._times["train_s"] += time.perf_counter() - start
        self._info = dict(getattr(self.trainer, "last", None) or {})
        if update.release is not None:
            raise ParameterError("bfv-masked rounds take no DP cluster release (FedAvg only)")
        start = time.perf_counter()
        self._machine = HEMaskedRound(
            self.client_id,
            msg,
            local,
            update,
            rng=self.rng,
            signing_key=self.signing_key,
            roster=self.roster,
            policy=self.policy,
            dump_dir=self._dump_dir,
        )
        self._times["crypto_s"] += time.perf_counter() - start

    def _tell_masked_abort(self, wire: pb.ServerMessage, reason: str) -> None:
        """A bfv-masked round this client cannot go on with: tell the server (typed abort).

        Covers a start whose config does not decode and any later message that
        breaks the running round; the daemon itself goes on to the next round.
        """
        from clients.he_daemon import HEMaskedRound

        replies: list[ClientAbort] = []
        if isinstance(self._machine, HEMaskedRound):
            replies = [m for m in self._machine.abort(reason) if isinstance(m, ClientAbort)]
        elif wire.HasField("he_masked_start"):
            replies = [ClientAbort(self.client_id, wire.he_masked_start.config.round, reason)]
        for out in replies:
            try:
                self.transport.send(dataclasses.replace(out, reason=out.reason[:200]))
            except (grpc.RpcError, SecAggError, ValueError) as exc:
                log.info("client %d: abort not delivered: %s", self.client_id, exc)

    def _send_release(self, release: ClusterRelease) -> bool:
        """Send a DP release (already charged to this client's ledger); False: refused."""
        start = time.perf_counter()
        try:
            self.transport.send(release)
        except grpc.RpcError as exc:
            self._abandon(f"release refused: {exc.code()}: {exc.details()}")
            return False
        self._times["network_s"] += time.perf_counter() - start
        self._bytes_up += _wire_size(release)
        return True

    def _report(self) -> None:
        """Hand this round's local figures to ``on_round`` (they stay on the client)."""
        if self.on_round is None:
            return
        record: dict[str, object] = {
            "client": self.client_id,
            "round": self._round,
            **self._times,
            "bytes_up": self._bytes_up,
        }
        loss = self._info.get("loss")
        if isinstance(loss, int | float):
            record["loss"] = float(loss)
        record |= {k: self._info[k] for k in LOCAL_FIGURES if k in self._info}
        entry = self._dp_entry
        if entry is not None:
            record |= {
                "dp_survivors": entry.survivors,
                "dp_epsilon_round": entry.epsilon,
                "dp_epsilon": entry.epsilon_cumulative,
                "dp_delta": entry.delta,
            }
        self.on_round(record)

    def _close_round(self) -> None:
        self._machine = None

    def _abandon(self, reason: str) -> None:
        self.stats.rounds_aborted.append((self._round, reason))
        log.warning("client %d: leaving round %d: %s", self.client_id, self._round, reason)
        self._machine = None


def _wire_size(msg: object) -> int:
    """Bytes this message puts on the wire (the masked vector dominates)."""
    if isinstance(msg, MaskedInput):
        return len(msg.payload)
    return int(codec.client_to_proto(msg).ByteSize())  # type: ignore[arg-type]
