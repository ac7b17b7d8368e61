"""Round orchestration: the host around the protocol's ServerMachine.

It owns what the pure machine must not: the clock (phase deadlines), the
cohort (who is present), per-client outboxes with sequence numbers (so a
retried poll gets the same message), the global model and the server step
(FedAvg: model += lr · weighted mean update). Thread-safe: the gRPC threads
call :meth:`submit` and :meth:`poll`; one driver thread calls :meth:`tick`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aggregator.settings import AggregatorSettings
from protocol.config import RoundConfig, default_colluders, minimum_threshold
from protocol.errors import UnknownClient, WrongPhase
from protocol.messages import ClientMessage, ServerMessage
from protocol.server import ServerMachine, ServerPhase
from protocol.simulation import make_config
from secagg.rng import RandomSource, SystemRandomSource

log = logging.getLogger("secagg.aggregator")
Clock = Callable[[], float]


def model_hash(model: np.ndarray) -> bytes:
    """What clients recompute from the model they download (bound into the session id)."""
    return hashlib.sha256(b"secagg/v1/model\x00" + model.astype("<f4").tobytes()).digest()


@dataclass
class RoundRecord:
    """One round's outcome, for the log and `secagg status`."""

    round: int
    attempt: int
    completed: bool
    cohort: list[int]
    survivors: list[int]
    excluded: dict[int, str]
    abort_reason: str | None
    weight_sum: int | None
    total_sha256: str | None
    phase_seconds: dict[str, float] = field(default_factory=dict)


class Coordinator:
    """Drives rounds; see the module docstring."""

    def __init__(
        self,
        settings: AggregatorSettings,
        roster: dict[int, bytes],
        *,
        clock: Clock = time.monotonic,
        rng: RandomSource | None = None,
    ) -> None:
        self.settings = settings
        self.roster = dict(roster)
        self._clock = clock
        self._rng = rng or SystemRandomSource()
        self._cond = threading.Condition()
        self.model = np.zeros(settings.dim, dtype=np.float32)
        self.round = 0
        self.attempt = 0
        self.machine: ServerMachine | None = None
        self.finished = False
        self.history: list[RoundRecord] = []
        self._outbox: dict[int, list[ServerMessage]] = {c: [] for c in self.roster}
        self._last_seen: dict[int, float] = {}
        self._deadline = 0.0
        self._phase_started = 0.0
        self._phase_seconds: dict[str, float] = {}
        self._waiting_since = clock()
        self._state_dir = Path(settings.state_dir)
        self._state_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ client-facing

    def _known(self, client: int) -> None:
        if client not in self.roster:
            raise UnknownClient(f"client {client} is not on the roster")

    def submit(self, client: int, msg: ClientMessage) -> None:
        """Hand one client message to the round; raises a ProtocolError on rejection."""
        self._known(client)
        with self._cond:
            self._last_seen[client] = self._clock()
            if self.machine is None or msg.round != self.round:
                raise WrongPhase(f"no round {msg.round} is running (current round {self.round})")
            self.machine.receive(client, msg)
            self._cond.notify_all()

    def poll(
        self, client: int, after: int, wait_s: float
    ) -> tuple[int, ServerMessage | None, bool]:
        """The message after sequence number ``after`` (waits up to ``wait_s``)."""
        self._known(client)
        end = self._clock() + wait_s
        with self._cond:
            while True:
                self._last_seen[client] = self._clock()
                box = self._outbox[client]
                if after < len(box):
                    return after + 1, box[after], False
                if self.finished:
                    return after, None, True
                remaining = end - self._clock()
                if remaining <= 0:
                    return after, None, False
                self._cond.wait(min(remaining, 0.5))

    def model_bytes(self, round_: int) -> bytes:
        """The global model for ``round_`` (only the current one is served)."""
        with self._cond:
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
            elif self.machine.phase in (ServerPhase.COMPLETED, ServerPhase.ABORTED):
                self._finish_round()
            elif self.machine.ready_to_advance() or now >= self._deadline:
                self._advance(now)
            self._cond.notify_all()

    def _present(self, now: float) -> list[int]:
        horizon = 3 * self.settings.poll_wait_s + 5
        return sorted(c for c, t in self._last_seen.items() if now - t <= horizon)

    def _maybe_start(self, now: float) -> None:
        present = self._present(now)
        wanted = self.settings.min_clients or len(self.roster)
        timed_out = now - self._waiting_since >= self.settings.start_timeout_s
        if len(present) < wanted and not (timed_out and len(present) >= 2):
            return
        config = self._config(tuple(present))
        self.machine = ServerMachine(config, roster=self.roster)
        self._phase_seconds = {}
        self._phase_started = now
        self._deadline = now + self.settings.phase_timeout_s
        log.info(
            "round %d attempt %d starts with %d clients", self.round, self.attempt, len(present)
        )
        self._send(self.machine.start())

    def _config(self, cohort: tuple[int, ...]) -> RoundConfig:
        s = self.settings
        n = len(cohort)
        threshold = s.threshold or None
        if threshold is None and not s.degree:
            safe = minimum_threshold(n, profile=s.profile, colluders=default_colluders(n))
            threshold = min(n, max(2 * n // 3 + 1, safe))
        base = make_config(
            clients=n,
            dim=s.dim,
            threshold=threshold,
            degree=s.degree or None,
            profile=s.profile,
            levels=s.levels,
            clip=s.clip,
            max_weight=s.max_weight,
            round_=self.round,
        )
        return RoundConfig(
            round=self.round,
            clients=cohort,
            threshold=base.threshold,
            dim=s.dim,
            modulus_bits=base.modulus_bits,
            clip=s.clip,
            levels=s.levels,
            max_weight=s.max_weight,
            profile=s.profile,
            degree=s.degree or None,
            nonce=self._rng.random_bytes(32),
            model_hash=model_hash(self.model),
        )

    def _advance(self, now: float) -> None:
        assert self.machine is not None
        phase = self.machine.phase.value
        self._phase_seconds[phase] = now - self._phase_started
        self._send(self.machine.advance())
        self._phase_started = self._clock()
        self._deadline = self._phase_started + self.settings.phase_timeout_s

    def _send(self, outgoing: list[tuple[int, ServerMessage]]) -> None:
        for client, msg in outgoing:
            self._outbox[client].append(msg)

    def _finish_round(self) -> None:
        machine = self.machine
        assert machine is not None
        result = machine.result
        record = RoundRecord(
            round=self.round,
            attempt=self.attempt,
            completed=result is not None,
            cohort=list(machine.config.clients),
            survivors=list(machine.survivors),
            excluded=dict(machine.excluded),
            abort_reason=machine.abort_reason,
            weight_sum=result.weight_sum if result else None,
            total_sha256=hashlib.sha256(result.total.astype("<u8").tobytes()).hexdigest()
            if result
            else None,
            phase_seconds=dict(self._phase_seconds),
        )
        self.history.append(record)
        with open(self._state_dir / "rounds.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps(record.__dict__) + "\n")
        self.machine = None
        self._waiting_since = self._clock()
        if result is not None:
            if result.weight_sum > 0:
                update = result.weighted_mean()
                self.model = (self.model + self.settings.learning_rate * update).astype(np.float32)
            log.info("round %d completed with %d survivors", self.round, len(result.survivors))
            self.round += 1
            self.attempt = 0
        else:
            log.warning("round %d aborted: %s", self.round, machine.abort_reason)
            self.attempt += 1
        if self.round >= self.settings.rounds:
            self.finished = True
            np.save(self._state_dir / "model.npy", self.model)

    def status(self) -> dict[str, Any]:
        """A machine-readable snapshot for operators."""
        with self._cond:
            return {
                "round": self.round,
                "phase": self.machine.phase.value if self.machine else "waiting",
                "finished": self.finished,
                "present": self._present(self._clock()),
                "history": [r.__dict__ for r in self.history[-10:]],
            }
