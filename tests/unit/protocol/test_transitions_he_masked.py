"""The bfv-masked hybrid's transition tables (protocol/he_masked.py), one test per cell.

Client (the key holder and a member): every reachable phase × every server
message type, SecAgg's and the key ceremony's. Either the documented transition
happens, or the client aborts with exactly one ClientAbort; ServerAbort aborts
silently; terminal phases ignore everything. Messages arrive in the order the
server sends them (the join list before the key list, the key bundle before
the share bundle); a member that gets its shares before its HE key waits in
AWAITING_INPUT.

Server, for a message sent by the key holder and by a member: every phase ×
every client message type. Accepted only in its own phase (a ClientAbort in any
collecting phase; an identical retry of a SecAgg message accepted earlier gets
the stored answer); anything else raises and changes nothing. Plain HE's HEUpload
has no place in this mode and is refused as WrongPhase in every phase, an aborted
round's included (the other types get RoundAborted there).
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cache

import pytest

from protocol.client import TERMINAL, ClientPhase
from protocol.errors import ProtocolError, RoundAborted, WrongPhase
from protocol.he_flow import HEJoin, HEKeyBundle, HEKeyDelivery, HEKeys, HEResult, HEUpload
from protocol.he_masked import HEMaskedClientMachine, HEMaskedConfig, HEMaskedServerMachine
from protocol.he_messages import HEMaskedStart
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    KeyList,
    MaskedInput,
    ServerAbort,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
)
from protocol.policy import lab_policy
from protocol.server import ServerPhase
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource, uniform_below
from tests.unit.protocol.test_transitions import (
    CLIENT_TYPES,
    SERVER_TYPES,
    _client_catalog,
    _server_catalog,
)

HOLDER, MEMBER = 1, 2
SERVER_KINDS: tuple[type, ...] = (HEMaskedStart, HEKeys, HEKeyBundle, HEResult, *SERVER_TYPES)
CLIENT_KINDS: tuple[type, ...] = (HEJoin, HEKeyDelivery, HEUpload, *CLIENT_TYPES)


@cache
def _setup() -> tuple[HEMaskedConfig, dict[int, SigningKey]]:
    rng = DeterministicRandomSource("he-masked-transitions")
    config = HEMaskedConfig(
        round=0,
        clients=(1, 2, 3, 4),
        threshold=3,
        dim=4,
        key_holder=HOLDER,
        clip=1.0,
        levels=1 << 8,
        max_weight=4,
        nonce=bytes(32),
        model_hash=hashlib.sha256(b"model").digest(),
    )
    return config, {c: signing_key(rng) for c in config.clients}


class HybridRound:
    """Server and clients of one hybrid round, stepped by hand.

    ``down`` holds each client's undelivered server messages, in the server's order.
    """

    def __init__(self) -> None:
        config, keys = _setup()
        self.config = config
        roster = {c: k.public for c, k in keys.items()}
        self.server = HEMaskedServerMachine(config, roster=roster)
        self.clients = {
            c: HEMaskedClientMachine(
                c,
                rng=DeterministicRandomSource(f"hybrid/{c}"),
                signing_key=keys[c],
                roster=roster,
                policy=lab_policy(config.secagg()),
            )
            for c in config.clients
        }
        rng = DeterministicRandomSource("hybrid/levels")
        for c, machine in self.clients.items():
            levels = uniform_below(rng, config.levels, config.dim)
            machine.set_levels(levels, weight=c, model_hash=config.model_hash)
        self.down: dict[int, list[object]] = {}
        self._post(self.server.start())
        self.sent: dict[tuple[int, type], ClientMessage] = {}
        self.held: dict[int, list[object]] = {}

    def _post(self, out: list[tuple[int, object]]) -> None:
        for c, msg in out:
            self.down.setdefault(c, []).append(msg)

    def deliver(self, client: int, msg: object) -> list[object]:
        """One server message to ``client``; its replies are recorded, not sent."""
        self.down[client].remove(msg)
        replies: list[object] = list(self.clients[client].handle(msg))  # type: ignore[arg-type]
        for r in replies:
            self.sent[(client, type(r))] = r  # type: ignore[assignment]
        return replies

    def step(self) -> None:
        """Deliver everything pending, feed the replies to the server, close its phase."""
        for c in list(self.down):
            for msg in list(self.down[c]):
                for reply in self.deliver(c, msg):
                    self.server.receive(c, reply)
        if self.server.phase not in (ServerPhase.COMPLETED, ServerPhase.ABORTED):
            self._post(self.server.advance())


@cache
def _catalog() -> dict[type, object]:
    """One real server message of every type, from a complete round (another session's)."""
    h = HybridRound()
    seen: dict[type, object] = {}
    while any(h.down.values()):
        seen.update({type(m): m for msgs in h.down.values() for m in msgs})
        h.step()
    assert h.server.phase is ServerPhase.COMPLETED
    seen[ServerAbort] = ServerAbort("test abort")
    # Never sent in a hybrid round: SecAgg's own start and end, and the graph phase.
    for kind in set(SERVER_KINDS) - set(seen):
        seen[kind] = _server_catalog("active")[kind]
    assert set(seen) == set(SERVER_KINDS)
    return seen


# ---------------------------------------------------------------------- client table

#: (role, phase, message type) -> (next phase, reply types)
DOCUMENTED: dict[tuple[int, ClientPhase, type], tuple[ClientPhase, tuple[type, ...]]] = {}
for _r in (HOLDER, MEMBER):
    DOCUMENTED[(_r, ClientPhase.AWAITING_CONFIG, HEMaskedStart)] = (
        ClientPhase.AWAITING_KEYS,
        (HEJoin, AdvertiseKeys),
    )
    DOCUMENTED[(_r, ClientPhase.AWAITING_KEYS, KeyList)] = (
        ClientPhase.AWAITING_SHARES,
        (ShareKeys,),
    )
    DOCUMENTED[(_r, ClientPhase.AWAITING_CONSISTENCY, ConsistencyRequest)] = (
        ClientPhase.AWAITING_UNMASK,
        (ConsistencySignature,),
    )
    DOCUMENTED[(_r, ClientPhase.AWAITING_UNMASK, UnmaskRequest)] = (
        ClientPhase.UNMASKED,
        (UnmaskShares,),
    )
    DOCUMENTED[(_r, ClientPhase.UNMASKED, HEResult)] = (ClientPhase.COMPLETED, ())
# The join list: the holder seals the key to everyone; a member just notes it.
DOCUMENTED[(HOLDER, ClientPhase.AWAITING_KEYS, HEKeys)] = (
    ClientPhase.AWAITING_KEYS,
    (HEKeyDelivery,),
)
DOCUMENTED[(MEMBER, ClientPhase.AWAITING_KEYS, HEKeys)] = (ClientPhase.AWAITING_KEYS, ())
# The holder has the key: its shares bring out the masked input at once.
DOCUMENTED[(HOLDER, ClientPhase.AWAITING_SHARES, ShareBundle)] = (
    ClientPhase.AWAITING_CONSISTENCY,
    (MaskedInput,),
)
# A member opens its key bundle, then its shares (or the other way round).
DOCUMENTED[(MEMBER, ClientPhase.AWAITING_SHARES, HEKeyBundle)] = (ClientPhase.AWAITING_SHARES, ())
DOCUMENTED[(MEMBER, ClientPhase.AWAITING_SHARES, ShareBundle)] = (ClientPhase.AWAITING_INPUT, ())
DOCUMENTED[(MEMBER, ClientPhase.AWAITING_INPUT, HEKeyBundle)] = (
    ClientPhase.AWAITING_CONSISTENCY,
    (MaskedInput,),
)

REACHABLE = {
    HOLDER: [
        p for p in ClientPhase if p not in (ClientPhase.AWAITING_GRAPH, ClientPhase.AWAITING_INPUT)
    ],
    MEMBER: [p for p in ClientPhase if p is not ClientPhase.AWAITING_GRAPH],  # complete graph
}
CLIENT_CELLS = [
    pytest.param(role, phase, kind, id=f"{role}-{phase.value}-{kind.__name__}")
    for role in (HOLDER, MEMBER)
    for phase in REACHABLE[role]
    for kind in SERVER_KINDS
]


def _client_at(role: int, phase: ClientPhase) -> HybridRound:
    h = HybridRound()
    me = h.clients[role]
    if phase is ClientPhase.ABORTED:
        assert me.handle(ServerAbort("operator stop")) == []
    if phase is ClientPhase.AWAITING_INPUT:  # the shares overtake the key bundle
        while me.phase is not ClientPhase.AWAITING_SHARES or not h.down.get(role):
            h.step()
        (bundle,) = [m for m in h.down[role] if isinstance(m, ShareBundle)]
        assert h.deliver(role, bundle) == []
    while me.phase is not phase:
        h.step()
    while not h.down.get(role) and any(h.down.values()):  # the others' turn
        h.step()
    assert me.phase is phase
    return h


@pytest.mark.parametrize(("role", "phase", "kind"), CLIENT_CELLS)
def test_hybrid_client_transition(role: int, phase: ClientPhase, kind: type) -> None:
    h = _client_at(role, phase)
    me = h.clients[role]
    pending = [m for m in h.down.get(role, []) if isinstance(m, kind)]
    msg = pending[0] if pending else _catalog()[kind]
    reason_before = me.abort_reason

    replies = me.handle(msg)  # type: ignore[arg-type]

    if phase in TERMINAL:
        assert replies == []
        assert me.phase is phase
        assert me.abort_reason == reason_before
    elif kind is ServerAbort:
        assert replies == []
        assert me.phase is ClientPhase.ABORTED
        assert me.abort_reason == "server aborted: test abort"
    elif (role, phase, kind) in DOCUMENTED:
        next_phase, reply_types = DOCUMENTED[(role, phase, kind)]
        assert me.phase is next_phase, me.abort_reason
        assert tuple(type(r) for r in replies) == reply_types
        assert all(r.client == role and r.round == h.config.round for r in replies)
        assert me.abort_reason is None
        if next_phase is ClientPhase.COMPLETED:
            assert me.result is not None
    else:
        assert me.phase is ClientPhase.ABORTED
        assert [type(r) for r in replies] == [ClientAbort]
        assert replies[0].client == role
        assert replies[0].round == h.config.round
        assert replies[0].reason == me.abort_reason
        assert me.result is None


def test_every_documented_cell_exists() -> None:
    assert {tuple(c.values) for c in CLIENT_CELLS} >= set(DOCUMENTED)


# ---------------------------------------------------------------------- server table

SERVER_PHASES = (
    ServerPhase.ADVERTISE,
    ServerPhase.SHARE,
    ServerPhase.MASKED,
    ServerPhase.CONSISTENCY,
    ServerPhase.UNMASK,
    ServerPhase.COMPLETED,
    ServerPhase.ABORTED,
)
SERVER_CELLS = [
    pytest.param(phase, sender, kind, id=f"{phase.value}-{sender}-{kind.__name__}")
    for phase in SERVER_PHASES
    for sender in (HOLDER, MEMBER)
    for kind in CLIENT_KINDS
    # The holder is a member like the others in SecAgg's part: one sender is enough there.
    if sender == MEMBER or kind in (HEJoin, HEKeyDelivery, HEUpload, ClientAbort)
]
#: (phase, sender, kind) accepted as new in that phase.
ACCEPTS = {
    (ServerPhase.ADVERTISE, s, k) for s in (HOLDER, MEMBER) for k in (HEJoin, AdvertiseKeys)
} | {
    (ServerPhase.SHARE, HOLDER, HEKeyDelivery),
    *((ServerPhase.SHARE, s, ShareKeys) for s in (HOLDER, MEMBER)),
    *((ServerPhase.MASKED, s, MaskedInput) for s in (HOLDER, MEMBER)),
    *((ServerPhase.CONSISTENCY, s, ConsistencySignature) for s in (HOLDER, MEMBER)),
    *((ServerPhase.UNMASK, s, UnmaskShares) for s in (HOLDER, MEMBER)),
}
_ORDER = list(SERVER_PHASES[:-1])  # the collecting phases, then COMPLETED


def _server_at(phase: ServerPhase) -> HybridRound:
    """The server collecting ``phase`` (or ended in it), this phase's replies held back."""
    h = HybridRound()
    if phase is ServerPhase.ABORTED:
        h.server.abort("operator stop")
    while h.server.phase is not phase:
        h.step()
    for c in list(h.down):
        for msg in list(h.down[c]):
            h.held.setdefault(c, []).extend(h.deliver(c, msg))
    return h


def _message(h: HybridRound, sender: int, kind: type) -> ClientMessage:
    """``sender``'s own message of ``kind`` in this round, else a foreign one."""
    if kind is ClientAbort:
        return ClientAbort(sender, h.config.round, "test abort")
    if (sender, kind) in h.sent:
        return h.sent[(sender, kind)]
    if kind is HEUpload:
        return HEUpload(sender, h.config.round, (b"\0",), bytes(64))  # type: ignore[return-value]
    if kind is HEKeyDelivery:  # only the holder makes one: a member's is forged
        delivery = _server_at_cached_delivery()
        return dataclasses.replace(delivery, client=sender)  # type: ignore[return-value]
    msg = _client_catalog()[kind]
    return dataclasses.replace(msg, client=sender, round=h.config.round)  # type: ignore[type-var]


@cache
def _server_at_cached_delivery() -> HEKeyDelivery:
    h = _server_at(ServerPhase.SHARE)
    delivery = h.sent[(HOLDER, HEKeyDelivery)]
    assert isinstance(delivery, HEKeyDelivery)
    return delivery


def _accepted_earlier(h: HybridRound, phase: ServerPhase, sender: int, kind: type) -> bool:
    """A SecAgg message ``sender`` had accepted in a closed phase (a retry: stored answer)."""
    closed = _ORDER[: _ORDER.index(phase)] if phase in _ORDER else []
    return kind in CLIENT_TYPES and any((p, sender, kind) in ACCEPTS for p in closed)


def _snapshot(h: HybridRound) -> tuple[object, ...]:
    s = h.server
    return (
        s.phase,
        s.waiting_for(),
        dict(s.excluded),
        s.ready_to_advance(),
        s.abort_reason,
        s.accepted_count(),
        s.survivors,
    )


@pytest.mark.parametrize(("phase", "sender", "kind"), SERVER_CELLS)
def test_hybrid_server_transition(phase: ServerPhase, sender: int, kind: type) -> None:
    h = _server_at(phase)
    server = h.server
    msg = _message(h, sender, kind)
    before = _snapshot(h)

    if kind is HEUpload:  # plain HE's upload: foreign to this mode, refused in every phase
        with pytest.raises(WrongPhase, match="no place in a bfv-masked round"):
            server.receive(sender, msg)
    elif phase is ServerPhase.ABORTED:
        with pytest.raises(RoundAborted):
            server.receive(sender, msg)
    elif kind is ClientAbort and phase is not ServerPhase.COMPLETED:
        server.receive(sender, msg)
        assert server.excluded[sender] == "client aborted: test abort"
        assert sender not in server.waiting_for()
        assert server.phase is phase
        return
    elif (phase, sender, kind) in ACCEPTS:
        server.receive(sender, msg)
        assert server.accepted_count() == before[5] + 1  # type: ignore[operator]
        assert sender not in server.excluded
        assert server.phase is phase
        return
    elif _accepted_earlier(h, phase, sender, kind):
        server.receive(sender, msg)  # the very message accepted before: a lost ack's retry
    else:
        with pytest.raises(ProtocolError) as refused:
            server.receive(sender, msg)
        assert isinstance(refused.value, WrongPhase), refused.value
    assert _snapshot(h) == before


@pytest.mark.parametrize("phase", [ServerPhase.COMPLETED, ServerPhase.ABORTED])
def test_hybrid_server_cannot_advance_from_a_terminal_phase(phase: ServerPhase) -> None:
    h = _server_at(phase)
    before = _snapshot(h)
    with pytest.raises(WrongPhase):
        h.server.advance()
    assert _snapshot(h) == before
    assert h.server.waiting_for() == set()


def test_hybrid_server_phases_follow_the_documented_order() -> None:
    """advertise → share → masked → consistency → unmask → completed (complete graph)."""
    h = HybridRound()
    seen = []
    while h.server.phase not in (ServerPhase.COMPLETED, ServerPhase.ABORTED):
        seen.append(h.server.phase)
        h.step()
    assert seen == _ORDER[:-1]
    assert h.server.phase is ServerPhase.COMPLETED
