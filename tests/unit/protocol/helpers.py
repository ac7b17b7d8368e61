"""A tiny in-memory driver for protocol tests that need to step a round by hand.

:func:`protocol.simulation.simulate` runs a round end to end; the tests here
also need to stop between phases, hold back or rewrite a message in flight,
replay one, or inspect both machines. :class:`Harness` does that:

- ``deliver_down(drop=..., intercept=...)`` hands the pending server messages to
  the clients (clients in ``drop`` go silent from then on, like a drop in
  :data:`protocol.simulation.PHASES`) and returns their replies, undelivered;
- ``deliver_up(replies, tamper=...)`` feeds replies to the server and returns
  the rejections (client id → the :class:`ProtocolError` raised);
- ``advance()`` closes the server phase; ``run(drops)`` does all of it.

Everything is seeded, so two harnesses built with the same arguments exchange
byte-identical messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from protocol.build import make_config
from protocol.client import ClientMachine
from protocol.config import Profile, RoundConfig
from protocol.errors import ProtocolError
from protocol.messages import (
    ClientMessage,
    RoundComplete,
    ServerAbort,
    ServerMessage,
    UnmaskShares,
)
from protocol.policy import lab_policy
from protocol.server import ServerMachine, ServerPhase
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource, uniform_below

Replies = dict[int, list[ClientMessage]]
#: Rewrites a client's message before the server sees it (None = swallow it).
Tamper = Callable[[int, ClientMessage], ClientMessage | None]
#: Rewrites a server message before the client sees it (None = swallow it).
Intercept = Callable[[int, ServerMessage], ServerMessage | None]

#: Server phases in order, as named in ``protocol.simulation.PHASES``.
COLLECTING = (
    ServerPhase.ADVERTISE,
    ServerPhase.GRAPH,
    ServerPhase.SHARE,
    ServerPhase.MASKED,
    ServerPhase.CONSISTENCY,
    ServerPhase.UNMASK,
)


@dataclass
class Sent:
    """One client message as it reached the server, and what the server said."""

    phase: ServerPhase
    client: int
    msg: ClientMessage
    error: ProtocolError | None


class Harness:
    """One round: the server, every client machine, and a record of the traffic."""

    def __init__(
        self,
        config: RoundConfig,
        *,
        seed: int | str = 0,
        levels: Mapping[int, np.ndarray] | None = None,
        weights: Mapping[int, int] | None = None,
        without_input: Iterable[int] = (),
    ) -> None:
        rng = DeterministicRandomSource(f"harness/{seed}")
        self.config = config
        self.keys: dict[int, SigningKey] = {
            c: signing_key(rng.fork(f"sign-{c}")) for c in config.clients
        }
        self.roster = {c: k.public for c, k in self.keys.items()}
        self.levels: dict[int, np.ndarray] = (
            dict(levels)
            if levels is not None
            else {
                c: uniform_below(rng.fork(f"levels-{c}"), config.levels, config.dim).astype(
                    np.uint64
                )
                for c in config.clients
            }
        )
        self.weights: dict[int, int] = dict(weights or {c: 1 for c in config.clients})
        self.clients = {
            c: ClientMachine(
                c,
                rng=rng.fork(f"client-{c}"),
                signing_key=self.keys[c],
                roster=self.roster,
                policy=lab_policy(config),
            )
            for c in config.clients
        }
        self.server = ServerMachine(config, roster=self.roster)
        skip = set(without_input)
        for c in config.clients:
            if c not in skip:
                self.set_input(c)
        self.outbox: list[tuple[int, ServerMessage]] = self.server.start()
        self.silent: set[int] = set()
        self.down: list[tuple[int, ServerMessage]] = []  # every server message handed over
        self.up: list[Sent] = []  # every client message fed to the server
        self.releases: dict[int, list[UnmaskShares]] = {}

    # ------------------------------------------------------------------ stepping

    def set_input(self, client: int) -> list[ClientMessage]:
        """Give ``client`` its levels and weight (returns the masked input if due now)."""
        return self.clients[client].set_levels(
            self.levels[client], weight=self.weights[client], model_hash=self.config.model_hash
        )

    def pending_for(self, client: int) -> ServerMessage | None:
        """The undelivered server message addressed to ``client``, if any."""
        found = [m for c, m in self.outbox if c == client]
        assert len(found) <= 1
        return found[0] if found else None

    def deliver_down(
        self, *, drop: Iterable[int] = (), intercept: Intercept | None = None
    ) -> Replies:
        """Hand the pending server messages to the clients; return their replies."""
        self.silent |= set(drop)
        replies: Replies = {}
        outbox, self.outbox = self.outbox, []
        for cid, msg in outbox:
            if cid in self.silent:
                continue
            seen = intercept(cid, msg) if intercept else msg
            if seen is None:
                continue
            self.down.append((cid, seen))
            out = self.clients[cid].handle(seen)
            if out:
                replies.setdefault(cid, []).extend(out)
        return replies

    def send(self, client: int, msg: ClientMessage) -> ProtocolError | None:
        """Feed one message to the server; record it; return the rejection, if any."""
        phase = self.server.phase
        if isinstance(msg, UnmaskShares):
            self.releases.setdefault(client, []).append(msg)
        try:
            self.server.receive(client, msg)
        except ProtocolError as exc:
            self.up.append(Sent(phase, client, msg, exc))
            return exc
        self.up.append(Sent(phase, client, msg, None))
        return None

    def deliver_up(self, replies: Replies, *, tamper: Tamper | None = None) -> dict[int, Exception]:
        """Feed replies to the server; return what it rejected, by client."""
        errors: dict[int, Exception] = {}
        for cid, msgs in replies.items():
            for msg in msgs:
                sent = tamper(cid, msg) if tamper else msg
                if sent is None:
                    continue
                error = self.send(cid, sent)
                if error is not None:
                    errors[cid] = error
        return errors

    def advance(self) -> list[tuple[int, ServerMessage]]:
        """Close the server's phase; its requests become the pending outbox."""
        self.outbox = self.server.advance()
        return self.outbox

    def step(
        self,
        *,
        drop: Iterable[int] = (),
        intercept: Intercept | None = None,
        tamper: Tamper | None = None,
    ) -> dict[int, Exception]:
        """One phase: deliver down, deliver up, advance. Returns the rejections."""
        errors = self.deliver_up(self.deliver_down(drop=drop, intercept=intercept), tamper=tamper)
        self.advance()
        return errors

    def finish(self) -> None:
        """Deliver the closing RoundComplete / ServerAbort messages."""
        assert self.server.phase in (ServerPhase.COMPLETED, ServerPhase.ABORTED)
        assert all(isinstance(m, RoundComplete | ServerAbort) for _, m in self.outbox)
        replies = self.deliver_down()
        assert not replies, "terminal messages must not be answered"

    def run(
        self,
        drops: Mapping[str, Iterable[int]] | None = None,
        *,
        intercept: Intercept | None = None,
        tamper: Tamper | None = None,
    ) -> None:
        """Run to the end; ``drops`` maps a phase name to the clients silent from then on."""
        drops = drops or {}
        while self.server.phase in COLLECTING:
            self.step(
                drop=drops.get(self.server.phase.value, ()), intercept=intercept, tamper=tamper
            )
        self.finish()

    def run_until(self, phase: ServerPhase) -> None:
        """Step without faults until the server collects ``phase`` (requests still pending)."""
        while self.server.phase is not phase:
            assert self.server.phase in COLLECTING, f"round ended in {self.server.phase}"
            self.step()

    # ------------------------------------------------------------------ checks

    def expected_total(self, survivors: Iterable[int]) -> np.ndarray:
        """Σ w·levels over ``survivors``, computed exactly (Python integers)."""
        total = np.zeros(self.config.dim, dtype=object)
        for c in survivors:
            total = total + self.levels[c].astype(object) * self.weights[c]
        return total

    def assert_exact(self, survivors: Iterable[int]) -> None:
        """The round completed and its result is bit-exact over ``survivors``."""
        survivors = tuple(sorted(survivors))
        server = self.server
        assert server.phase is ServerPhase.COMPLETED, server.abort_reason
        assert server.result is not None
        assert server.result.survivors == survivors
        assert server.result.total.tolist() == self.expected_total(survivors).tolist()
        assert server.result.weight_sum == sum(self.weights[c] for c in survivors)

    def sent_by(self, client: int, kind: type) -> list[Sent]:
        """Messages of type ``kind`` that ``client`` sent to the server."""
        return [s for s in self.up if s.client == client and isinstance(s.msg, kind)]


def small_config(
    n: int = 5,
    *,
    dim: int = 8,
    threshold: int | None = None,
    profile: Profile = "active",
    degree: int | None = None,
    levels: int = 1 << 16,
    max_weight: int = 1,
    modulus_bits: int | None = None,
    round_: int = 0,
    seed: bytes = b"",
) -> RoundConfig:
    """A small valid config: :func:`protocol.build.make_config`'s safe defaults."""
    return make_config(
        clients=n,
        dim=dim,
        threshold=threshold,
        degree=degree,
        profile=profile,
        levels=levels,
        max_weight=max_weight,
        modulus_bits=modulus_bits,
        round_=round_,
        seed=seed,
    )


def owners(msg: UnmaskShares) -> tuple[set[int], set[int]]:
    """(owners of self-mask shares, owners of key shares) in one unmasking reply."""
    return {o for o, _ in msg.self_mask_shares}, {o for o, _ in msg.key_shares}
