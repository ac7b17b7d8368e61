"""Round orchestration: the host around the protocol's ServerMachine.

It owns what the pure machine must not: the clock (phase deadlines), the
cohort (who is present), per-client outboxes, the global model, the server
step (FedAvg: model += lr · weighted mean update) and durability. Every
accepted message, exclusion and phase advance is committed to the store
before the client is answered; on restart :meth:`recover` replays the
running attempt through a fresh machine and resumes it if its phase deadline
allows, else aborts it and tells every client.

What differs per mode (masked or homomorphic rounds) is the driver's
(:mod:`aggregator.drivers`), picked once from ``settings.mode``; what differs
per face-FL method is ``methods``' (:mod:`aggregator.method_state`, a
do-nothing one for FedAvg).

Rounds are retried after an abort; each attempt is an *epoch* (a fresh nonce,
so a fresh session). Outboxes are per epoch, numbered from 1, so a client's
poll (epoch, after) always finds its place again, even across restarts.

Thread-safe: the gRPC threads call :meth:`submit` and :meth:`poll`; one
driver thread calls :meth:`tick`.
"""

from __future__ import annotations

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

from aggregator.drivers import AnyConfig, Driver, driver_for
from aggregator.faults import fault_point
from aggregator.method_state import method_rounds
from aggregator.operator import Metrics
from aggregator.ratelimit import RateLimited
from aggregator.settings import AggregatorSettings
from aggregator.spool import SpooledPayload
from aggregator.store import Store, StoreError
from protocol.errors import AuthenticationFailed, UnknownClient, WrongPhase
from protocol.he_messages import AnyClientMessage, AnyServerMessage
from protocol.method_messages import ClusterRelease
from secagg.errors import ParameterError
from secagg.rng import RandomSource, SystemRandomSource
from secagg_pb import codec

if TYPE_CHECKING:
    from aggregator.drivers import Machine

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
        #: What the mode changes: configs, machines, cohorts, commits, serving.
        self.driver: Driver[Any, Any] = driver_for(settings, self.roster, store, self.model)
        #: A face-FL method's extras, releases and next state (FedAvg's does nothing).
        self.methods = method_rounds(settings, store.path.parent)
        self.finished = False
        self.history: deque[RoundRecord] = deque(maxlen=HISTORY)  # bounded: soak runs
        self._outbox: dict[int, list[AnyServerMessage]] = {}
        #: The previous attempt's outboxes where the driver keeps them (HE: a late poll
        #: still gets the sum).
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
            self.round, self.model = self.driver.recover(self.round, self.model)
            self.epoch = self.store.last_epoch()
            self.finished = self.round >= self.settings.rounds
            self.methods.load(self.round)
            attempt = self.store.running_attempt()
            if attempt is None:
                return
            if attempt.round < self.round:  # crashed after its checkpoint, before the status
                self.store.finish_attempt(attempt.epoch, "completed")
                return
            try:
                config = self.driver.decode(attempt.config)
            except Exception as exc:
                raise StoreError(f"stored config of epoch {attempt.epoch} is unreadable") from exc
            self._replay(attempt.epoch, config, started=attempt.started)

    def _replay(self, epoch: int, config: AnyConfig, *, started: float) -> None:
        self.epoch = epoch
        machine = self.driver.machine(config)
        self.machine = machine
        self._outbox = {c: [] for c in config.clients}
        self._nonces = {}
        # The round's wall time runs from its first start, across the restart.
        self._round_started = started
        self._phase_seconds = {}
        self._phase_started = started
        self._bytes_in = 0
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
                    self.methods.accept(event.client, msg, machine.config.clients)
                else:
                    self._deliver(machine, event.client, msg)
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

    def _deliver(self, machine: Machine, client: int, msg: AnyClientMessage) -> None:
        """Hand a message to the running round's machine (its driver says which fit)."""
        if isinstance(msg, ClusterRelease):  # the host keeps a method's releases, not the machine
            raise WrongPhase("a cluster release is not a protocol message")
        self.driver.deliver(machine, client, msg)

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

        self._accept(
            client, msg.round, session, nonce, lambda m: self._deliver(m, client, msg), log
        )

    def _submit_release(
        self, client: int, msg: ClusterRelease, session: bytes | None, nonce: bytes | None
    ) -> None:
        """Keep a DP cluster release of the running attempt (validated; committed first)."""
        self._known(client)
        with self._cond:
            self._last_seen[client] = self._clock()
            machine = self.machine
            self.methods.check_takes_releases()  # FedAvg: refused before anything else
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
            self.driver.receive_masked(machine, client, round_, payload)

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
        """An unread message of the previous attempt, if the client polls for it (HE modes).

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
            self.driver.check_model_round(round_, self.round)
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
        present, awaited, wanted = self.driver.cohort(present, awaited, wanted)
        fewest = self.driver.fewest
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
        config = self.driver.config(
            self.round, tuple(present), self._rng, self.model, self.methods.state
        )
        if self.driver.keeps_late_messages:  # its sum must still reach the clients that poll late
            self._previous = (self.epoch, self._outbox)
        self.epoch += 1
        self.store.begin_attempt(self.epoch, self.round, self.driver.encode(config), now)
        self.machine = self.driver.machine(config)
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
            # A method's state goes with RoundStart/HEStart (bound into its model hash).
            self._outbox.setdefault(client, []).append(self.methods.bind(msg))

    def _finish_round(self) -> None:
        machine = self.machine
        assert machine is not None
        outcome = self.driver.outcome(machine)
        record = RoundRecord(
            round=self.round,
            epoch=self.epoch,
            completed=outcome.completed,
            cohort=list(machine.config.clients),
            survivors=outcome.survivors,
            excluded=dict(machine.excluded),
            abort_reason=machine.abort_reason,
            weight_sum=outcome.weight_sum,
            total_sha256=outcome.total_sha256,
            **self._attempt_figures(),
        )
        self._observe(record)
        self.machine = None
        self._waiting_since = self._clock()
        self._mark_dropped(record, machine.excluded)
        if record.completed:  # the model's step (or the lineage's), committed
            self.round, self.model = self.driver.commit(
                self.round, machine, self.model, self.methods
            )
            self.store.finish_attempt(self.epoch, "completed")
            log.info(self.driver.completed_log, record.round, len(record.survivors))
        else:
            self._retry_at = self._clock() + self.settings.retry_delay_s
            self.store.finish_attempt(self.epoch, "aborted")
            log.warning(self.driver.aborted_log, self.round, machine.abort_reason)
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
            "method_releases": len(self.methods.releases),
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
