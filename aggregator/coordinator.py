"""Round orchestration: the host around the protocol's ServerMachine.

It owns what the pure machine must not: the clock (phase deadlines), the
cohort (who is present), per-client outboxes, the global model, the server
step (FedAvg: model += lr · weighted mean update) and durability. Every
accepted message, exclusion and phase advance is committed to the store
before the client is answered; on restart :meth:`recover` replays the
running attempt through a fresh machine and resumes it if its phase deadline
allows, else aborts it and tells every client.

Rounds are retried after an abort; each attempt is an *epoch* (a fresh nonce,
so a fresh session). Outboxes are per epoch, numbered from 1, so a client's
poll (epoch, after) always finds its place again, even across restarts.

Thread-safe: the gRPC threads call :meth:`submit` and :meth:`poll`; one
driver thread calls :meth:`tick`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from aggregator import he_rounds
from aggregator.method_state import MethodRounds
from aggregator.operator import Metrics
from aggregator.ratelimit import RateLimited
from aggregator.settings import AggregatorSettings
from aggregator.spool import SpooledPayload
from aggregator.store import Store, StoreError
from protocol.build import make_config
from protocol.config import RoundConfig, minimum_threshold
from protocol.dp_round import round_colluders, round_plan
from protocol.errors import AuthenticationFailed, ProtocolError, UnknownClient, WrongPhase
from protocol.faults import fault_point
from protocol.he_messages import (
    AnyClientMessage,
    AnyServerMessage,
    HEConfig,
    HEJoin,
    HEKeyDelivery,
    HEMaskedConfig,
    HEStart,
    HEUpload,
)
from protocol.he_model import sum_digest
from protocol.messages import MaskedInput, RoundStart
from protocol.method_messages import ClusterRelease, lineage_digest, model_digest
from protocol.plain import PlainServer
from protocol.policy import consortium_colluders
from protocol.server import ServerMachine
from secagg.errors import ParameterError
from secagg.rng import RandomSource, SystemRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb

if TYPE_CHECKING:
    from protocol.he_flow import HEServerMachine  # TenSEAL: loaded in HE modes only
    from protocol.he_masked import HEMaskedServerMachine

    Machine = ServerMachine | PlainServer | HEServerMachine | HEMaskedServerMachine
    HEMachine = HEServerMachine | HEMaskedServerMachine

log = logging.getLogger("secagg.aggregator")
Clock = Callable[[], float]
#: Round records kept in memory for `secagg status`; the full log is rounds.jsonl.
HISTORY = 50
#: Signed requests one client may make in one round attempt (about 6 honest ones, plus retries).
MAX_NONCES = 1024


def initial_model(settings: AggregatorSettings) -> np.ndarray:
    """θ₀: the configured .npy (checked against ``dim``), else zeros."""
    if not settings.initial_model:
        return np.zeros(settings.dim, dtype=np.float32)
    try:
        model = np.load(settings.initial_model, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read initial_model {settings.initial_model}: {exc}") from exc
    if model.shape != (settings.dim,) or not np.all(np.isfinite(model)):
        raise ParameterError(
            f"initial_model must hold {settings.dim} finite values, found shape {model.shape}"
        )
    result: np.ndarray = model.astype(np.float32)
    return result


def model_hash(model: np.ndarray) -> bytes:
    """What clients recompute from the model they download (bound into the session id)."""
    return hashlib.sha256(b"secagg/v1/model\x00" + model.astype("<f4").tobytes()).digest()


def _deliver(machine: Machine, client: int, msg: AnyClientMessage) -> None:
    """Hand a message to the running round's machine; HE messages fit HE rounds only."""
    if isinstance(msg, ClusterRelease):  # the host keeps a method's releases, not the machine
        raise WrongPhase("a cluster release is not a protocol message")
    if isinstance(machine, ServerMachine | PlainServer):
        if isinstance(msg, HEJoin | HEKeyDelivery | HEUpload):
            raise WrongPhase(f"{type(msg).__name__} belongs to an HE round; this one is not")
        machine.receive(client, msg)
    else:
        machine.receive(client, msg)


def _over(machine: Machine) -> bool:
    """Completed or aborted (SecAgg's and the HE machine's phases share these names)."""
    return machine.phase.value in ("completed", "aborted")


@dataclass
class RoundRecord:
    """One attempt's outcome, for the log and `secagg status`."""

    round: int
    epoch: int
    completed: bool
    cohort: list[int]
    survivors: list[int]
    excluded: dict[int, str]
    abort_reason: str | None
    weight_sum: int | None
    total_sha256: str | None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    bytes_received: int = 0
    method_releases: int = 0  # DP cluster releases of the attempt (fedgc, privacyface)
    #: Seconds from the previous attempt's end (or the aggregator's start) to this start.
    start_wait_s: float = 0.0
    #: Roster clients absent at the start that the start waited for (start_timeout_s ran out).
    waited_for: list[int] = field(default_factory=list)
    #: Roster clients absent at the start and not waited for: dropped, or gone silent.
    not_waited_for: list[int] = field(default_factory=list)


def round_threshold(s: AggregatorSettings, n: int, roster_size: int) -> int:
    """The round's threshold: the setting, else make_config's default, raised so that a
    client's default policy accepts it (clients take n_C from the roster, not the cohort:
    protocol/policy.py)."""
    t = make_config(
        clients=n,
        dim=1,
        threshold=s.threshold or None,
        degree=s.degree or None,
        profile=s.profile,
    ).threshold
    if s.threshold or s.degree or s.profile == "plain":
        return t
    colluders = consortium_colluders(roster_size)
    if colluders >= n:
        return t  # no threshold helps: clients refuse the cohort (and say why)
    return min(n, max(t, minimum_threshold(n, profile=s.profile, colluders=colluders)))


class Coordinator:
    """Drives rounds; see the module docstring."""

    def __init__(
        self,
        settings: AggregatorSettings,
        roster: dict[int, bytes],
        store: Store,
        *,
        clock: Clock = time.time,
        rng: RandomSource | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.roster = dict(roster)
        self.store = store
        self._clock = clock
        self._rng = rng or SystemRandomSource()
        self._cond = threading.Condition()
        self.model = initial_model(settings)
        self.round = 0
        self.epoch = 0
        self.machine: Machine | None = None
        #: HE modes (ckks, bfv-masked): rounds done, the model's lineage, who holds the model.
        self.he: he_rounds.HEState | None = None
        if settings.mode in ("ckks", "bfv-masked"):
            self.he = he_rounds.HEState(0, model_hash(self.model), None)
        #: A face-FL method's extras, releases and next state (None: plain FedAvg).
        self.methods: MethodRounds | None = None
        if settings.method != "fedavg":
            self.methods = MethodRounds(settings, store.path.parent)
        self.finished = False
        self.history: deque[RoundRecord] = deque(maxlen=HISTORY)  # bounded: soak runs
        self._outbox: dict[int, list[AnyServerMessage]] = {}
        #: HE modes: the previous attempt's outboxes, so a late poll still gets the sum.
        self._previous: tuple[int, dict[int, list[AnyServerMessage]]] | None = None
        self._last_seen: dict[int, float] = {}
        #: When each client last *began* a poll: a dead client's poll may still be waiting
        #: on the server, but it never begins another one (liveness, issue 18).
        self._poll_began: dict[int, float] = {}
        #: Clients dropped from the last attempt, and when: not waited for until they poll again.
        self._dropped: dict[int, float] = {}
        #: The running attempt's start_wait_s, waited_for and not_waited_for, for its record.
        self._start_figures: dict[str, Any] = {}
        #: Request nonces seen per client in the running attempt (replay refusal, T28).
        self._nonces: dict[int, set[bytes]] = {}
        self._deadline = 0.0
        self._phase_started = 0.0
        self._phase_seconds: dict[str, float] = {}
        self._round_started = 0.0
        self._bytes_in = 0
        self._retry_at = 0.0
        self._waiting_since = clock()

    # ------------------------------------------------------------------ recovery

    def recover(self) -> None:
        """Rebuild state from the store; call once before serving."""
        with self._cond:
            checkpoint = None if self.he else self.store.latest_checkpoint()
            if self.he is not None:  # no model checkpoints: the clients hold the model
                self.he = he_rounds.load_state(self.store.path.parent, model_hash(self.model))
                self.round = self.he.round
            if checkpoint is not None:
                self.round, model = checkpoint
                if model.shape != (self.settings.dim,):
                    raise ProtocolError("checkpoint does not match the configured dimension")
                self.model = model.astype(np.float32)
            self.epoch = self.store.last_epoch()
            self.finished = self.round >= self.settings.rounds
            if self.methods is not None:
                self.methods.load(self.round)
            attempt = self.store.running_attempt()
            if attempt is None:
                return
            if attempt.round < self.round:  # crashed after its checkpoint, before the status
                self.store.finish_attempt(attempt.epoch, "completed")
                return
            try:
                config = self._decode_config(attempt.config)
            except Exception as exc:
                raise StoreError(f"stored config of epoch {attempt.epoch} is unreadable") from exc
            self._replay(attempt.epoch, config, started=attempt.started)

    def _decode_config(self, raw: bytes) -> RoundConfig | HEConfig | HEMaskedConfig:
        if self.settings.mode == "bfv-masked":
            return codec.he_masked_config_from_proto(pb.HEMaskedConfig.FromString(raw))
        if self.he is not None:
            return codec.he_config_from_proto(pb.HEConfig.FromString(raw))
        return codec.config_from_proto(pb.RoundConfig.FromString(raw))

    def _encode_config(self, config: RoundConfig | HEConfig | HEMaskedConfig) -> bytes:
        if isinstance(config, HEMaskedConfig):
            return codec.he_masked_config_to_proto(config).SerializeToString()
        if isinstance(config, HEConfig):
            return codec.he_config_to_proto(config).SerializeToString()
        return codec.config_to_proto(config).SerializeToString()

    def _machine_for(self, config: RoundConfig | HEConfig | HEMaskedConfig) -> Machine:
        if isinstance(config, HEMaskedConfig):
            from protocol.he_masked import HEMaskedServerMachine

            return HEMaskedServerMachine(config, roster={c: self.roster[c] for c in config.clients})
        if isinstance(config, HEConfig):
            from protocol.he_flow import HEServerMachine

            return HEServerMachine(config, roster={c: self.roster[c] for c in config.clients})
        if config.profile == "plain":
            return PlainServer(config)
        roster = {c: self.roster[c] for c in config.clients} if config.profile == "active" else {}
        return ServerMachine(config, roster=roster)

    def _replay(
        self, epoch: int, config: RoundConfig | HEConfig | HEMaskedConfig, *, started: float
    ) -> None:
        self.epoch = epoch
        machine = self._machine_for(config)
        self.machine = machine
        self._outbox = {c: [] for c in config.clients}
        self._nonces = {}
        # The round's wall time runs from its first start, across the restart.
        self._round_started = started
        self._phase_seconds = {}
        self._phase_started = started
        self._bytes_in = 0
        if self.methods is not None:
            self.methods.begin_attempt()
        self._send(machine.start())
        last = self._clock()
        advanced = False
        for event in self.store.events(epoch):
            last = event.at
            if event.kind == "message":
                assert event.body is not None and event.client is not None
                msg = codec.parse_any_client_message(event.body)
                if isinstance(msg, ClusterRelease):
                    assert self.methods is not None
                    self.methods.accept(event.client, msg, machine.config.clients)
                else:
                    _deliver(machine, event.client, msg)
                if event.nonce is not None:  # a replay after the restart is still refused
                    self._nonces.setdefault(event.client, set()).add(event.nonce)
            elif event.kind == "exclude":
                assert event.client is not None
                machine.exclude(event.client, event.note or "excluded")
            elif event.kind == "advance":
                advanced = True
                self._phase_seconds[machine.phase.value] = event.at - self._phase_started
                self._phase_started = event.at
                self._send(machine.advance())
            elif event.kind == "abort":
                self._send(machine.abort(event.note or "aborted"))
        self._phase_started = last
        self._deadline = last + (
            self.settings.phase_timeout_s if advanced else self._first_phase_timeout()
        )
        log.info(
            "recovered round %d (epoch %d) in phase %s", config.round, epoch, machine.phase.value
        )
        if _over(machine):
            return  # tick() finishes it
        if self._clock() >= self._deadline:
            self._abort("the aggregator restarted after the phase deadline")

    def _abort(self, reason: str, *, durable: bool = True) -> None:
        """Abort the running attempt; ``durable=False`` when the store cannot be written."""
        machine = self.machine
        assert machine is not None
        if durable:
            self.store.log(self.epoch, "abort", at=self._clock(), note=reason)
        self._send(machine.abort(reason))

    # ------------------------------------------------------------------ client-facing

    def _known(self, client: int) -> None:
        if client not in self.roster:
            raise UnknownClient(f"client {client} is not on the roster")

    def submit(
        self,
        client: int,
        msg: AnyClientMessage,
        *,
        session: bytes | None = None,
        nonce: bytes | None = None,
    ) -> None:
        """Hand one client message to the round; commits it before returning.

        ``session`` and ``nonce`` come from a verified request signature (T28):
        the request must be for the running round attempt (its config nonce) and
        its nonce unused in that attempt, else WrongPhase and nothing changes.

        Raises a ProtocolError on rejection (after logging any exclusion it caused).
        A method's cluster release goes to :meth:`_submit_release` instead.
        """
        if isinstance(msg, ClusterRelease):
            self._submit_release(client, msg, session, nonce)
            return

        def log() -> int:
            body = codec.client_to_proto(msg).SerializeToString()
            self.store.log(
                self.epoch, "message", at=self._clock(), client=client, body=body, nonce=nonce
            )
            return len(body)

        self._accept(client, msg.round, session, nonce, lambda m: _deliver(m, client, msg), log)

    def _submit_release(
        self, client: int, msg: ClusterRelease, session: bytes | None, nonce: bytes | None
    ) -> None:
        """Keep a DP cluster release of the running attempt (validated; committed first)."""
        self._known(client)
        with self._cond:
            self._last_seen[client] = self._clock()
            machine = self.machine
            if self.methods is None:
                raise WrongPhase("this aggregator runs FedAvg: it takes no cluster releases")
            if machine is None or msg.round != self.round or _over(machine):
                raise WrongPhase(f"no round {msg.round} is running (current round {self.round})")
            if msg.client != client:
                raise AuthenticationFailed(f"client {client} sent a release for {msg.client}")
            if session is not None:
                self._fresh(client, machine.config.nonce, session, nonce or b"")
            if client in machine.excluded:
                raise UnknownClient(f"client {client} is excluded from this round")
            outcome = "rejected"
            try:
                new = self.methods.accept(client, msg, machine.config.clients)
                outcome = "accepted" if new else "repeated"
            finally:
                self.metrics.messages.labels(outcome).inc()
            if new:
                body = codec.client_to_proto(msg).SerializeToString()
                self.store.log(
                    self.epoch, "message", at=self._clock(), client=client, body=body, nonce=nonce
                )
                self._bytes_in += len(body)
                self.metrics.bytes_received.inc(len(body))

    def submit_masked(
        self,
        client: int,
        round_: int,
        payload: SpooledPayload,
        *,
        session: bytes | None = None,
        nonce: bytes | None = None,
    ) -> None:
        """:meth:`submit` for an uploaded masked input, read from its spool file in slices.

        Neither the sum nor the event log ever holds the whole payload in
        memory (the plain baseline's machine reads it whole).
        """

        def receive(machine: Machine) -> None:
            if isinstance(machine, ServerMachine):
                machine.receive_masked(client, round_, payload)
            else:
                machine.receive(
                    client, MaskedInput(client, round_, payload.read(0, payload.length))
                )

        def log() -> int:
            header = codec.masked_input_header(client, round_, payload.length)
            self.store.log_stream(
                self.epoch,
                "message",
                at=self._clock(),
                client=client,
                header=header,
                source=payload,
                nonce=nonce,
            )
            return len(header) + payload.length

        self._accept(client, round_, session, nonce, receive, log)

    def _accept(
        self,
        client: int,
        round_: int,
        session: bytes | None,
        nonce: bytes | None,
        receive: Callable[[Machine], None],
        log: Callable[[], int],
    ) -> None:
        """The body of :meth:`submit`: checks, the machine, the commit, the advance."""
        self._known(client)
        with self._cond:
            machine = self.machine
            if machine is None or round_ != self.round:
                raise WrongPhase(f"no round {round_} is running (current round {self.round})")
            if session is not None:
                self._fresh(client, machine.config.nonce, session, nonce or b"")
            # Present only once the request is for this attempt: a client that only sends
            # stale requests would otherwise join the next cohort and cost it a timeout.
            self._last_seen[client] = self._clock()
            excluded = client in machine.excluded
            accepted = machine.accepted_count()
            outcome = "rejected"
            try:
                receive(machine)
                outcome = "accepted" if machine.accepted_count() > accepted else "repeated"
            finally:
                self.metrics.messages.labels(outcome).inc()
                fault_point("after_receive_before_commit")
                if machine.accepted_count() > accepted:  # new, not an identical retry
                    try:
                        size = log()
                    except Exception as exc:
                        # The machine holds a message the log lacks, and cannot forget it: an
                        # identical retry would be acknowledged as "repeated" although never
                        # recorded. End the attempt (in memory; the store is failing) so no
                        # round ever completes on a message a restart would not replay.
                        self._abort(f"could not record client {client}'s message", durable=False)
                        self._cond.notify_all()
                        raise exc from None
                    self._bytes_in += size
                    self.metrics.bytes_received.inc(size)
                if not excluded and client in machine.excluded:  # aborted, rejected or conflicting
                    note = machine.excluded[client]
                    self.store.log(
                        self.epoch, "exclude", at=self._clock(), client=client, note=note
                    )
                if machine.ready_to_advance():  # the last answer closes the phase at once
                    self._advance(self._clock())
                self._cond.notify_all()

    def check_upload(self, client: int, round_: int | None, session: bytes | None) -> None:
        """Refuse, on an upload's first chunk, one no running attempt could accept.

        The same checks :meth:`_accept` makes once the upload is read (round,
        signed attempt) plus cohort membership, so a stale or foreign upload
        never holds a worker while its stream is read (issue 15). ``round_``
        None: before the first chunk (the caller known from its certificate).
        """
        self._known(client)
        with self._cond:
            machine = self.machine
            if machine is None or (round_ is not None and round_ != self.round):
                raise WrongPhase(f"no round {round_} is running (current round {self.round})")
            if session is not None and session != machine.config.nonce:
                raise WrongPhase("upload signed for another round attempt (stale or replayed)")
            if client not in machine.config.clients:
                raise WrongPhase(f"client {client} is not in this round's cohort")

    def _fresh(self, client: int, running: bytes, session: bytes, nonce: bytes) -> None:
        """Refuse a request signed for another attempt, or a nonce seen in this one."""
        if session != running:
            raise WrongPhase("request signed for another round attempt (stale or replayed)")
        seen = self._nonces.setdefault(client, set())
        if nonce in seen:
            raise WrongPhase("request nonce already used in this round attempt (replay)")
        if len(seen) >= MAX_NONCES:
            raise RateLimited(f"client {client} sent {MAX_NONCES} requests in one round attempt")
        seen.add(nonce)

    def poll(
        self, client: int, epoch: int, after: int, wait_s: float
    ) -> tuple[int, int, AnyServerMessage | None, bool]:
        """(epoch, seq, message, finished): ``client``'s next message; waits up to ``wait_s``."""
        self._known(client)
        end = self._clock() + wait_s
        with self._cond:
            self._poll_began[client] = self._clock()
            while True:
                self._last_seen[client] = self._clock()
                if epoch != self.epoch:
                    late = self._late(client, epoch, after)
                    if late is not None:  # HE: the sum of the attempt the client was in
                        return epoch, after + 1, late, False
                    epoch, after = self.epoch, 0  # a new attempt: start from its first message
                box = self._outbox.get(client, [])
                if after < len(box):
                    return epoch, after + 1, box[after], False
                if self.finished:
                    return epoch, after, None, True
                remaining = end - self._clock()
                if remaining <= 0:
                    return epoch, after, None, False
                self._cond.wait(min(remaining, 0.5))

    def _late(self, client: int, epoch: int, after: int) -> AnyServerMessage | None:
        """HE mode: an unread message of the previous attempt, if the client polls for it.

        In HE modes a client that misses a round's encrypted sum falls behind
        for good (only the clients hold the model), so the next attempt
        starting must not skip it (in memory only: a restart forgets it).
        """
        if self._previous is None or self._previous[0] != epoch:
            return None
        box = self._previous[1].get(client, [])
        return box[after] if after < len(box) else None

    def model_bytes(self, round_: int) -> bytes:
        """The global model for ``round_`` (only the current one is served).

        In HE modes the aggregator holds θ₀ only and serves it for round 0
        (a client without a model asks for it); later models exist only on the clients.
        """
        with self._cond:
            if self.he is not None:
                if round_ != 0:
                    raise WrongPhase(
                        f"model of round {round_} is not here: in {self.settings.mode} mode the "
                        "aggregator "
                        "holds only the initial model (round 0), the clients hold the rest"
                    )
                return self.model.astype("<f4").tobytes()
            if round_ != self.round:
                raise WrongPhase(f"model of round {round_} is not available (current {self.round})")
            return self.model.astype("<f4").tobytes()

    # ------------------------------------------------------------------ driver

    def tick(self) -> None:
        """Start, advance or finish the current round as time and answers allow."""
        with self._cond:
            if self.finished:
                return
            now = self._clock()
            if self.machine is None:
                self._maybe_start(now)
            elif _over(self.machine):
                self._finish_round()
            elif self.machine.ready_to_advance() or now >= self._deadline:
                self._advance(now)
            self._cond.notify_all()

    def _present(self, now: float) -> list[int]:
        horizon = 3 * self.settings.poll_wait_s + 5
        return sorted(c for c, t in self._last_seen.items() if now - t <= horizon)

    def _gone(self, now: float) -> set[int]:
        """Clients not waited for: dropped from the last attempt and not polling since,
        or seen once and silent past the presence horizon (issue 18)."""
        present = set(self._present(now))
        dropped = {c for c, at in self._dropped.items() if self._poll_began.get(c, -math.inf) <= at}
        return dropped | {c for c in self._last_seen if c not in present}

    def _maybe_start(self, now: float) -> None:
        """Start a round: at once when every wanted client is present; after the join
        window when every client still alive is present (dead ones are not waited for);
        after start_timeout_s with whoever is present (at least the fewest)."""
        if self._retry_at > now:
            return
        gone = self._gone(now)
        present = [c for c in self._present(now) if c not in gone]
        awaited = [c for c in sorted(self.roster) if c not in gone]
        wanted = self.settings.min_clients or len(self.roster)
        fewest = 2
        if self.he is not None:  # only clients holding the current model can take part
            present = list(he_rounds.cohort(present, self.he))
            awaited = [c for c in awaited if self.he.in_sync is None or c in self.he.in_sync]
            wanted = min(wanted, he_rounds.eligible(self.he, len(self.roster)))
            fewest = he_rounds.MIN_COHORT
        waited = now - self._waiting_since
        missing = [c for c in awaited if c not in present]
        joined = waited >= self.settings.join_window_s and not missing
        timed_out = waited >= self.settings.start_timeout_s
        if len(present) < wanted and not ((joined or timed_out) and len(present) >= fewest):
            return
        self._start_figures = {
            "start_wait_s": round(waited, 3),
            "waited_for": missing if len(present) < wanted else [],
            "not_waited_for": sorted(set(self.roster) - set(present) - set(missing)),
        }
        if self._start_figures["not_waited_for"]:
            log.info(
                "round %d does not wait for clients %s (dropped or silent)",
                self.round,
                self._start_figures["not_waited_for"],
            )
        config = self._config(tuple(present))
        if self.he is not None:  # its sum must still reach the clients that poll late
            self._previous = (self.epoch, self._outbox)
        self.epoch += 1
        self.store.begin_attempt(self.epoch, self.round, self._encode_config(config), now)
        self.machine = self._machine_for(config)
        if self.methods is not None:
            self.methods.begin_attempt()
        self._outbox = {c: [] for c in config.clients}
        self._nonces = {}
        self._phase_seconds = {}
        self._phase_started = self._round_started = now
        self._bytes_in = 0
        self._deadline = now + self._first_phase_timeout()
        log.info("round %d (epoch %d) starts with %d clients", self.round, self.epoch, len(present))
        self._send(self.machine.start())

    def _first_phase_timeout(self) -> float:
        """Clients train before they answer the first phase, so it may get longer."""
        return self.settings.train_timeout_s or self.settings.phase_timeout_s

    def _threshold(self, n: int) -> int:
        return round_threshold(self.settings, n, len(self.roster))

    def _config(self, cohort: tuple[int, ...]) -> RoundConfig | HEConfig | HEMaskedConfig:
        s = self.settings
        if self.he is not None and s.mode == "bfv-masked":
            return he_rounds.make_masked_config(
                round_=self.round,
                clients=cohort,
                threshold=self._threshold(len(cohort)),  # active, complete graph
                dim=s.vector_dim,
                clip=s.clip,
                levels=s.levels,
                max_weight=s.max_weight,
                learning_rate=s.learning_rate,
                nonce=self._rng.random_bytes(32),
                lineage=self.he.lineage,  # FedAvg only: no method state to bind
            )
        if self.he is not None:
            return he_rounds.make_config(
                round_=self.round,
                clients=cohort,
                dim=s.vector_dim,  # the model, then a method's extras (FedFace's S_k/n_k)
                clip=s.clip,
                max_weight=s.max_weight,
                learning_rate=s.learning_rate,
                nonce=self._rng.random_bytes(32),
                lineage=lineage_digest(  # bound to the state the HEStart carries
                    self.he.lineage, self.methods.state if self.methods is not None else None
                ),
            )
        # make_config holds the defaults (safe threshold, minimal modulus); this round
        # differs only in its cohort, its fresh nonce and the model it announces.
        levels, clip, max_weight = s.levels, s.clip, s.max_weight
        dim = s.vector_dim  # the model, then a method's extras (FedFace's S_k/n_k)
        threshold = self._threshold(len(cohort))
        if s.dp_noise_multiplier > 0:  # the quantiser the DP plan fixes (protocol/dp_round.py)
            plan = round_plan(
                dim=dim,
                clients=len(cohort),
                threshold=threshold,
                l2_clip=s.dp_clip,
                noise_multiplier=s.dp_noise_multiplier,
                colluders=round_colluders(
                    len(cohort), s.dp_colluders, sparse=0 < s.degree < len(cohort) - 1
                ),
            )
            levels, clip, max_weight = plan.levels, plan.quantizer_clip, 1
        base = make_config(
            clients=len(cohort),
            dim=dim,
            threshold=threshold,
            degree=s.degree or None,
            profile=s.profile,
            levels=levels,
            clip=clip,
            max_weight=max_weight,
            round_=self.round,
        )
        return dataclasses.replace(
            base,
            clients=cohort,
            degree=s.degree or None,
            nonce=self._rng.random_bytes(32),
            model_hash=self._model_hash(),
        )

    def _model_hash(self) -> bytes:
        """The model's hash, bound to the method state the RoundStart carries (if any)."""
        state = self.methods.state if self.methods is not None else None
        return model_digest(self.model.astype("<f4").tobytes(), state)

    def _advance(self, now: float) -> None:
        machine = self.machine
        assert machine is not None
        phase = machine.phase.value
        self.store.log(self.epoch, "advance", at=now, note=phase)
        self._phase_seconds[phase] = now - self._phase_started
        self._send(machine.advance())
        self._phase_started = self._clock()
        self._deadline = self._phase_started + self.settings.phase_timeout_s

    def _send(self, outgoing: Sequence[tuple[int, AnyServerMessage]]) -> None:
        for client, msg in outgoing:
            if self.methods is not None and isinstance(msg, RoundStart | HEStart):  # bound
                msg = dataclasses.replace(msg, state=self.methods.state)
            self._outbox.setdefault(client, []).append(msg)

    def _finish_round(self) -> None:
        machine = self.machine
        assert machine is not None
        if not isinstance(machine, ServerMachine | PlainServer):
            self._finish_he_round(machine)
            return
        result = machine.result
        record = RoundRecord(
            round=self.round,
            epoch=self.epoch,
            completed=result is not None,
            cohort=list(machine.config.clients),
            survivors=list(machine.survivors) if result else [],
            excluded=dict(machine.excluded),
            abort_reason=machine.abort_reason,
            weight_sum=result.weight_sum if result else None,
            total_sha256=hashlib.sha256(np.ascontiguousarray(result.total).tobytes()).hexdigest()
            if result
            else None,
            **self._attempt_figures(),
        )
        self._observe(record)
        self.machine = None
        self._waiting_since = self._clock()
        self._mark_dropped(record, machine.excluded)
        if result is not None:
            if result.weight_sum > 0:
                update = result.weighted_mean()
                if self.methods is not None:  # θ's step; S and the releases: the next state
                    update = self.methods.finish(self.round, update, result.weight_sum)
                self.model = (self.model + self.settings.learning_rate * update).astype(np.float32)
            elif self.methods is not None:
                self.methods.finish(self.round, np.zeros(self.settings.vector_dim), 0)
            if self.methods is not None:
                self.methods.save()  # before the checkpoint: a restart serves the same state
            self.round += 1
            self.store.save_checkpoint(self.round, self.model)
            self.store.finish_attempt(self.epoch, "completed")
            log.info("round %d completed with %d survivors", record.round, len(result.survivors))
        else:
            self._retry_at = self._clock() + self.settings.retry_delay_s
            self.store.finish_attempt(self.epoch, "aborted")
            log.warning("round %d aborted: %s", self.round, machine.abort_reason)
        self._publish(record)
        if record.completed:  # after the round's commit: retention (aggregator/store.py)
            self.store.prune(self.round, at=self._clock())

    def _mark_dropped(self, record: RoundRecord, excluded: dict[int, str]) -> None:
        """Who the next start does not wait for until they poll again: the cohort's
        dropouts (a completed round's non-survivors, an aborted one's excluded)."""
        now = self._clock()
        out = set(record.cohort) - set(record.survivors) if record.completed else set(excluded)
        for client in out:
            self._dropped[client] = now
        for client in record.survivors:
            self._dropped.pop(client, None)

    def _attempt_figures(self) -> dict[str, Any]:
        """The running attempt's timings, bytes and releases, for its RoundRecord."""
        return {
            "phase_seconds": dict(self._phase_seconds),
            "wall_s": self._clock() - self._round_started,
            "bytes_received": self._bytes_in,
            "method_releases": len(self.methods.releases) if self.methods is not None else 0,
            **self._start_figures,
        }

    def _observe(self, record: RoundRecord) -> None:
        """Keep the record for `secagg status` and count it in the metrics."""
        self.history.append(record)
        self.metrics.rounds.labels("completed" if record.completed else "aborted").inc()
        for phase, seconds in record.phase_seconds.items():
            self.metrics.phase_seconds.labels(phase).observe(seconds)
        if record.completed:
            self.metrics.round_seconds.observe(record.wall_s)
            self.metrics.dropouts.inc(len(record.cohort) - len(record.survivors))

    def _publish(self, record: RoundRecord) -> None:
        """Append the record to rounds.jsonl; call only after the round's commit."""
        # Only after the commit: a crash before it replays the round, never logs it twice.
        with open(self.store.path.parent / "rounds.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps(record.__dict__) + "\n")
        self.metrics.round.set(self.round)
        if self.round >= self.settings.rounds:
            self.finished = True

    def _finish_he_round(self, machine: HEMachine) -> None:
        """An HE round: no model step (the clients take it); the lineage moves on instead."""
        assert self.he is not None
        blobs = machine.result_blobs
        completed = blobs is not None
        record = RoundRecord(
            round=self.round,
            epoch=self.epoch,
            completed=completed,
            cohort=list(machine.config.clients),
            survivors=list(machine.contributors) if completed else [],
            excluded=dict(machine.excluded),
            abort_reason=machine.abort_reason,
            weight_sum=None,  # encrypted: only the clients learn it
            total_sha256=sum_digest(blobs).hex() if blobs is not None else None,
            **self._attempt_figures(),
        )
        self._observe(record)
        self.machine = None
        self._waiting_since = self._clock()
        self._mark_dropped(record, machine.excluded)
        if blobs is not None:
            if self.methods is not None:  # the releases go with the next HEStart
                self.methods.finish_he(self.round)
                self.methods.save()  # before the round's commit, as in masked rounds
            # Who holds the next model: the clients the sum went to (bfv-masked: those
            # that unmasked, a subset of the contributors).
            self.he = self.he.after(self.round, blobs, machine.recipients)
            he_rounds.save_state(self.store.path.parent, self.he)  # the commit of the round
            self.round = self.he.round
            self.store.finish_attempt(self.epoch, "completed")
            log.info("HE round %d completed: %d contributors", record.round, len(record.survivors))
        else:
            self._retry_at = self._clock() + self.settings.retry_delay_s
            self.store.finish_attempt(self.epoch, "aborted")
            log.warning("HE round %d aborted: %s", self.round, machine.abort_reason)
        self._publish(record)
        if record.completed:  # after the round's commit: retention (aggregator/store.py)
            self.store.prune(self.round, at=self._clock())

    def status(self) -> dict[str, Any]:
        """A machine-readable snapshot for operators."""
        with self._cond:
            present = self._present(self._clock())
            self.metrics.clients_present.set(len(present))
            return {
                "round": self.round,
                "rounds": self.settings.rounds,
                "profile": self.settings.profile,
                "mode": self.settings.mode,
                "method": self.settings.method,
                "epoch": self.epoch,
                "phase": self.machine.phase.value if self.machine else "waiting",
                "finished": self.finished,
                "present": present,
                "waiting_for": sorted(self.machine.waiting_for()) if self.machine else [],
                "history": [r.__dict__ for r in list(self.history)[-10:]],
                "recent_aborts": [
                    {"round": r.round, "epoch": r.epoch, "reason": r.abort_reason}
                    for r in self.history
                    if not r.completed
                ][-5:],
            }
