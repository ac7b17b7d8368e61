"""The ``plain`` profile: FedAvg with updates sent in the clear.

It exists as the baseline that `secagg bench round` measures the secure
modes against; it protects nothing, and an honest client refuses it unless
its policy accepts mode ``plain``. The machines mirror the secure ones' host
interface so the coordinator and the daemon drive both the same way: the
round is RoundStart → MaskedInput (float32 w·x ‖ w, unmasked) → RoundComplete.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from protocol.client import ClientInput, ClientPhase
from protocol.config import RoundConfig
from protocol.errors import (
    ConflictingMessage,
    InvalidMessage,
    ProtocolError,
    RoundAborted,
    UnexpectedCall,
    WrongPhase,
)
from protocol.messages import (
    ClientAbort,
    ClientMessage,
    MaskedInput,
    RoundComplete,
    RoundStart,
    ServerAbort,
    ServerMessage,
)
from protocol.policy import ClientPolicy
from protocol.server import Outgoing, ServerPhase, check_sender
from secagg.errors import ParameterError


def encode_plain(vector: np.ndarray, weight: int) -> bytes:
    """float32 little-endian w·x followed by w."""
    values = np.append(np.asarray(vector, dtype=np.float64) * weight, float(weight))
    return values.astype("<f4").tobytes()


@dataclass(frozen=True, slots=True)
class PlainResult:
    """Σ w·x and Σ w in float64, over ``survivors``."""

    total: np.ndarray
    weight_sum: int
    survivors: tuple[int, ...]

    def weighted_mean(self) -> np.ndarray:
        """Σ w·x / Σ w."""
        if self.weight_sum == 0:
            raise ParameterError("all weights are zero")
        out: np.ndarray = self.total / self.weight_sum
        return out


class PlainClient:
    """Sends its update in the clear once the round starts and the input is set."""

    def __init__(self, client_id: int, *, policy: ClientPolicy | None = None) -> None:
        self.client_id = client_id
        self.phase = ClientPhase.AWAITING_CONFIG
        self.abort_reason: str | None = None
        self._policy = policy or ClientPolicy()
        self._input: ClientInput | None = None
        self._config: RoundConfig | None = None

    def set_input(
        self, vector: np.ndarray, *, weight: int, model_hash: bytes
    ) -> list[ClientMessage]:
        """Fix the float update, once."""
        if self._input is not None:
            raise UnexpectedCall("the input is fixed once per session")
        self._input = ClientInput(
            np.asarray(vector, dtype=np.float64), None, int(weight), model_hash
        )
        return self._maybe_send()

    def set_levels(
        self, levels: np.ndarray, *, weight: int, model_hash: bytes
    ) -> list[ClientMessage]:
        """Integer inputs are sent as floats in this profile."""
        return self.set_input(
            np.asarray(levels, dtype=np.float64), weight=weight, model_hash=model_hash
        )

    def handle(self, msg: ServerMessage) -> list[ClientMessage]:
        """RoundStart → the update; RoundComplete → done; anything else ends the round."""
        if self.phase in (ClientPhase.COMPLETED, ClientPhase.ABORTED):
            return []
        match (self.phase, msg):
            case (_, ServerAbort()):
                self._end(ClientPhase.ABORTED, f"server aborted: {msg.reason}")
                return []
            case (ClientPhase.AWAITING_CONFIG, RoundStart()):
                problem = self._check(msg.config)
                if problem:
                    return self._abort(msg.config.round, problem)
                self._config = msg.config
                self.phase = ClientPhase.AWAITING_INPUT
                return self._maybe_send()
            case (ClientPhase.UNMASKED, RoundComplete()):
                self._end(ClientPhase.COMPLETED, None)
                return []
        round_ = self._config.round if self._config else 0
        return self._abort(round_, f"unexpected {type(msg).__name__} in phase {self.phase.value}")

    def _check(self, config: RoundConfig) -> str | None:
        if config.profile != "plain":
            return "the plain client only takes plain rounds"
        if self._policy.mode_problem("plain", None):
            return "this client's policy forbids sending its update in the clear"
        if self.client_id not in config.clients:
            return "this client is not in the announced cohort"
        inp = self._input
        if inp is not None and inp.model_hash != config.model_hash:
            return "model hash differs from the announced config"
        return None

    def _maybe_send(self) -> list[ClientMessage]:
        config, inp = self._config, self._input
        if self.phase is not ClientPhase.AWAITING_INPUT or config is None or inp is None:
            return []
        problem = self._check(config)
        if problem:
            return self._abort(config.round, problem)
        assert inp.vector is not None
        if inp.vector.shape != (config.dim,):
            return self._abort(config.round, f"input must be a vector of length {config.dim}")
        self.phase = ClientPhase.UNMASKED
        clipped = np.clip(inp.vector, -config.clip, config.clip)  # as the secure modes clip
        return [MaskedInput(self.client_id, config.round, encode_plain(clipped, inp.weight))]

    def _abort(self, round_: int, reason: str) -> list[ClientMessage]:
        self._end(ClientPhase.ABORTED, reason)
        return [ClientAbort(self.client_id, round_, reason)]

    def _end(self, phase: ClientPhase, reason: str | None) -> None:
        self.phase = phase
        self.abort_reason = reason


class PlainServer:
    """Sums plain updates; the host interface of :class:`protocol.server.ServerMachine`."""

    def __init__(self, config: RoundConfig) -> None:
        if config.profile != "plain":
            raise ParameterError("PlainServer runs plain rounds only")
        self.config = config
        self.phase = ServerPhase.ADVERTISE
        self.abort_reason: str | None = None
        self.result: PlainResult | None = None
        self.excluded: dict[int, str] = {}
        self.suspects: dict[int, str] = {}
        self.session_id = b""
        self._digests: dict[int, bytes] = {}
        self._sum = np.zeros(config.vector_length, dtype=np.float64)

    @property
    def aborted(self) -> bool:
        """True once the round is aborted."""
        return self.phase is ServerPhase.ABORTED

    @property
    def survivors(self) -> tuple[int, ...]:
        """Clients whose update is in the sum."""
        return tuple(sorted(self._digests))

    def start(self) -> Outgoing:
        """Announce the round; updates are due at once."""
        self.phase = ServerPhase.MASKED
        return [(c, RoundStart(self.config)) for c in self.config.clients]

    def waiting_for(self) -> set[int]:
        """Clients that have not sent their update."""
        if self.phase is not ServerPhase.MASKED:
            return set()
        return {c for c in self.config.clients if c not in self._digests and c not in self.excluded}

    def ready_to_advance(self) -> bool:
        """Every client answered."""
        return self.phase is ServerPhase.MASKED and not self.waiting_for()

    def accepted_count(self) -> int:
        """Updates accepted so far."""
        return len(self._digests)

    def exclude(self, client: int, reason: str) -> None:
        """Host decision (or replay of one)."""
        self.excluded[client] = reason

    def receive(self, client: int, msg: ClientMessage) -> None:
        """Accept one update, or raise why not (state unchanged when it raises)."""
        if self.phase is ServerPhase.ABORTED:
            raise RoundAborted(f"round {self.config.round} was aborted: {self.abort_reason}")
        if self.phase is not ServerPhase.MASKED:
            raise WrongPhase(f"round {self.config.round} is {self.phase.value}")
        check_sender(self.config, self.excluded, client, msg)
        if isinstance(msg, ClientAbort):
            self.excluded[client] = f"client aborted: {msg.reason[:200]}"
            return
        if not isinstance(msg, MaskedInput):
            raise WrongPhase(f"{type(msg).__name__} is not accepted in a plain round")
        digest = hashlib.sha256(msg.payload).digest()
        if client in self._digests:
            if self._digests[client] == digest:
                return
            self.excluded[client] = "sent a conflicting second update"
            raise ConflictingMessage(f"client {client} already sent a different update")
        try:
            values = self._decode(msg.payload)
        except ProtocolError as exc:
            self.excluded[client] = str(exc)
            raise
        self._sum += values
        self._digests[client] = digest

    def _decode(self, payload: bytes) -> np.ndarray:
        if len(payload) != 4 * self.config.vector_length:
            raise InvalidMessage(
                f"update has {len(payload)} bytes, expected {4 * self.config.vector_length}"
            )
        values = np.frombuffer(payload, dtype="<f4").astype(np.float64)
        if not np.isfinite(values).all():
            raise InvalidMessage("update holds NaN or infinity")
        weight = values[-1]
        if weight != int(weight) or not 0 <= weight <= self.config.max_weight:
            raise InvalidMessage(f"weight must be an integer in [0, {self.config.max_weight}]")
        if np.abs(values[:-1]).max(initial=0.0) > self.config.clip * weight * (1 + 1e-6):
            raise InvalidMessage("update exceeds the clip range")
        return values

    def advance(self) -> Outgoing:
        """Close the round over whoever answered."""
        if self.phase is not ServerPhase.MASKED:
            raise WrongPhase(f"cannot advance from {self.phase.value}")
        survivors = self.survivors
        if not survivors:
            return self._abort("no client sent an update")
        self.result = PlainResult(self._sum[:-1].copy(), round(float(self._sum[-1])), survivors)
        self.phase = ServerPhase.COMPLETED
        return [(c, RoundComplete()) for c in survivors if c not in self.excluded]

    def abort(self, reason: str) -> Outgoing:
        """Host decision."""
        if self.phase in (ServerPhase.COMPLETED, ServerPhase.ABORTED):
            raise WrongPhase(f"round already {self.phase.value}")
        return self._abort(reason)

    def _abort(self, reason: str) -> Outgoing:
        self.phase = ServerPhase.ABORTED
        self.abort_reason = reason
        return [(c, ServerAbort(reason)) for c in self.config.clients if c not in self.excluded]
