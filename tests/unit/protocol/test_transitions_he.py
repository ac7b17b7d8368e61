"""The HE machines' transition tables (protocol/he_flow.py), one test per cell.

Client (the key holder and a member): every reachable :class:`HEPhase` × every
server message type. Either the documented transition happens, or the client
aborts silently (phase ABORTED, no reply: an HE client never answers with a
ClientAbort); terminal phases ignore everything.

Server, for a message sent by the key holder and by a member: every phase ×
every client message type (the HE ones and SecAgg's). A message is accepted only
in its own phase (a ClientAbort in any open phase, an identical retry of an
accepted upload while uploads are open); anything else raises and changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cache

import numpy as np
import pytest

from protocol.errors import ProtocolError, RoundAborted, WrongPhase
from protocol.he_flow import (
    HEClientMachine,
    HEConfig,
    HEJoin,
    HEKeyBundle,
    HEKeyDelivery,
    HEKeys,
    HEPhase,
    HEResult,
    HEServerMachine,
    HEStart,
    HEUpload,
)
from protocol.messages import ClientAbort, ClientMessage, ServerAbort
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource
from tests.unit.protocol.test_transitions import CLIENT_TYPES, _client_catalog

HOLDER, MEMBER = 1, 2
SERVER_KINDS: tuple[type, ...] = (HEStart, HEKeys, HEKeyBundle, HEResult, ServerAbort)
CLIENT_KINDS: tuple[type, ...] = (HEJoin, HEKeyDelivery, HEUpload, *CLIENT_TYPES)
TERMINAL = (HEPhase.COMPLETED, HEPhase.ABORTED)


@cache
def _setup() -> tuple[HEConfig, dict[int, SigningKey]]:
    rng = DeterministicRandomSource("he-transitions")
    config = HEConfig(
        round=0,
        clients=(1, 2, 3),
        dim=4,
        scheme="ckks",
        key_holder=HOLDER,
        clip=1.0,
        max_weight=4,
        levels=1 << 8,
        nonce=bytes(32),
        model_hash=hashlib.sha256(b"model").digest(),
    )
    return config, {c: signing_key(rng) for c in config.clients}


class HERound:
    """Server and clients of one HE round, stepped by hand; ``down`` is undelivered."""

    def __init__(self) -> None:
        config, keys = _setup()
        self.config = config
        roster = {c: k.public for c, k in keys.items()}
        self.server = HEServerMachine(config, roster=roster)
        self.clients = {
            c: HEClientMachine(
                c, rng=DeterministicRandomSource(f"he/{c}"), signing_key=keys[c], roster=roster
            )
            for c in config.clients
        }
        for c, machine in self.clients.items():
            machine.set_input(np.full(config.dim, 0.1 * c), weight=c, model_hash=config.model_hash)
        self.down = dict(self.server.start())
        self.sent: dict[tuple[int, type], ClientMessage] = {}  # what each client sent, by type

    def step(self) -> None:
        """Deliver ``down``, feed every reply to the server, then close its phase."""
        down, self.down = self.down, {}
        for c, msg in down.items():
            for reply in self.clients[c].handle(msg):
                self.sent[(c, type(reply))] = reply
                self.server.receive(c, reply)
        if self.server.phase not in TERMINAL:
            self.down = dict(self.server.advance())


@cache
def _catalog() -> tuple[dict[type, object], dict[tuple[int, type], ClientMessage]]:
    """One real message of every type from a complete round (another session's)."""
    h = HERound()
    down: dict[type, object] = {}
    while h.down:
        down.update({type(m): m for m in h.down.values()})
        h.step()
    assert h.server.phase is HEPhase.COMPLETED
    down[ServerAbort] = ServerAbort("test abort")
    assert set(down) == set(SERVER_KINDS)
    return down, dict(h.sent)


# ---------------------------------------------------------------------- client table

#: (role, phase, message type) -> (next phase, reply types)
DOCUMENTED: dict[tuple[int, HEPhase, type], tuple[HEPhase, tuple[type, ...]]] = {
    (HOLDER, HEPhase.AWAITING_CONFIG, HEStart): (HEPhase.JOIN, (HEJoin,)),
    (MEMBER, HEPhase.AWAITING_CONFIG, HEStart): (HEPhase.JOIN, (HEJoin,)),
    # The holder makes the key, seals it to everyone and uploads at once.
    (HOLDER, HEPhase.JOIN, HEKeys): (HEPhase.RESULT, (HEKeyDelivery, HEUpload)),
    (MEMBER, HEPhase.JOIN, HEKeys): (HEPhase.KEYS, ()),
    (MEMBER, HEPhase.KEYS, HEKeyBundle): (HEPhase.RESULT, (HEUpload,)),
    (HOLDER, HEPhase.RESULT, HEResult): (HEPhase.COMPLETED, ()),
    (MEMBER, HEPhase.RESULT, HEResult): (HEPhase.COMPLETED, ()),
}
REACHABLE = {
    HOLDER: [p for p in HEPhase if p not in (HEPhase.KEYS, HEPhase.UPLOAD)],
    MEMBER: [p for p in HEPhase if p is not HEPhase.UPLOAD],  # UPLOAD is the server's
}
CLIENT_CELLS = [
    pytest.param(role, phase, kind, id=f"{role}-{phase.value}-{kind.__name__}")
    for role in (HOLDER, MEMBER)
    for phase in REACHABLE[role]
    for kind in SERVER_KINDS
]


def _client_at(role: int, phase: HEPhase) -> HERound:
    h = HERound()
    me = h.clients[role]
    if phase is HEPhase.ABORTED:
        assert me.handle(ServerAbort("operator stop")) == []
    while me.phase is not phase:
        h.step()
    while h.down and role not in h.down:  # the others' turn (the holder uploads first)
        h.step()
    assert me.phase is phase
    return h


@pytest.mark.parametrize(("role", "phase", "kind"), CLIENT_CELLS)
def test_he_client_transition(role: int, phase: HEPhase, kind: type) -> None:
    h = _client_at(role, phase)
    me = h.clients[role]
    pending = h.down.get(role)
    msg = pending if isinstance(pending, kind) else _catalog()[0][kind]
    reason_before = me.abort_reason

    replies = me.handle(msg)  # type: ignore[arg-type]

    if phase in TERMINAL:
        assert replies == []
        assert me.phase is phase
        assert me.abort_reason == reason_before
    elif kind is ServerAbort:
        assert replies == []
        assert me.phase is HEPhase.ABORTED
        assert me.abort_reason == "server aborted: test abort"
    elif (role, phase, kind) in DOCUMENTED:
        next_phase, reply_types = DOCUMENTED[(role, phase, kind)]
        assert me.phase is next_phase, me.abort_reason
        assert tuple(type(r) for r in replies) == reply_types
        assert all(r.client == role and r.round == h.config.round for r in replies)
        assert me.abort_reason is None
        if next_phase is HEPhase.COMPLETED:
            assert me.result is not None
    else:
        assert replies == []
        assert me.phase is HEPhase.ABORTED
        assert me.abort_reason == f"unexpected {kind.__name__} in phase {phase.value}"
        assert me.result is None


def test_every_client_phase_is_covered() -> None:
    assert {c.values[1] for c in CLIENT_CELLS} == set(HEPhase) - {HEPhase.UPLOAD}
    assert {tuple(c.values) for c in CLIENT_CELLS} >= set(DOCUMENTED)


# ---------------------------------------------------------------------- server table

SERVER_PHASES = (HEPhase.JOIN, HEPhase.KEYS, HEPhase.UPLOAD, HEPhase.COMPLETED, HEPhase.ABORTED)
SERVER_CELLS = [
    pytest.param(phase, sender, kind, id=f"{phase.value}-{sender}-{kind.__name__}")
    for phase in SERVER_PHASES
    for sender in (HOLDER, MEMBER)
    for kind in CLIENT_KINDS
    # SecAgg's messages have no place in any phase: one sender is enough.
    if sender == MEMBER or kind in (HEJoin, HEKeyDelivery, HEUpload, ClientAbort)
]


def _server_at(phase: HEPhase) -> HERound:
    """The server collecting ``phase`` (or ended in it), this phase's replies not sent."""
    h = HERound()
    if phase is HEPhase.ABORTED:
        h.server.abort("operator stop")
    # The clients' answers to ``down`` are what the server collects in its phase:
    # compute them, hold them back, and stop.
    while h.server.phase is not phase:
        h.step()
    held: dict[int, list[ClientMessage]] = {}
    for c, msg in h.down.items():
        held[c] = list(h.clients[c].handle(msg))  # type: ignore[arg-type]
        for reply in held[c]:
            h.sent[(c, type(reply))] = reply
    h.down = {}
    return h


def _message(h: HERound, sender: int, kind: type) -> ClientMessage:
    """``sender``'s own message of ``kind`` in this round, else one from another round."""
    if kind is ClientAbort:
        return ClientAbort(sender, h.config.round, "test abort")
    if (sender, kind) in h.sent:
        return h.sent[(sender, kind)]
    if kind in CLIENT_TYPES:
        msg: object = _client_catalog()[kind]
    else:
        sent = _catalog()[1]
        msg = sent.get((sender, kind)) or next(m for (_, k), m in sent.items() if k is kind)
    return dataclasses.replace(msg, client=sender, round=h.config.round)  # type: ignore[type-var]


def _snapshot(h: HERound) -> tuple[object, ...]:
    s = h.server
    return (
        s.phase,
        s.waiting_for(),
        dict(s.excluded),
        s.ready_to_advance(),
        s.abort_reason,
        s.accepted_count(),
        s.contributors,
    )


#: (phase, sender, kind) accepted as new in that phase.
ACCEPTS = {
    (HEPhase.JOIN, HOLDER, HEJoin),
    (HEPhase.JOIN, MEMBER, HEJoin),
    (HEPhase.KEYS, HOLDER, HEKeyDelivery),
    (HEPhase.KEYS, HOLDER, HEUpload),  # after its delivery
    (HEPhase.UPLOAD, MEMBER, HEUpload),
}


@pytest.mark.parametrize(("phase", "sender", "kind"), SERVER_CELLS)
def test_he_server_transition(phase: HEPhase, sender: int, kind: type) -> None:
    h = _server_at(phase)
    server = h.server
    if (phase, sender, kind) == (HEPhase.KEYS, HOLDER, HEUpload):
        server.receive(HOLDER, h.sent[(HOLDER, HEKeyDelivery)])
    msg = _message(h, sender, kind)
    before = _snapshot(h)

    if phase is HEPhase.ABORTED:
        with pytest.raises(RoundAborted):
            server.receive(sender, msg)
    elif kind is ClientAbort and phase is not HEPhase.COMPLETED:
        server.receive(sender, msg)
        assert server.excluded[sender] == "client aborted: test abort"
        assert sender not in server.waiting_for()
        assert server.phase is phase
        return
    elif (phase, sender, kind) in ACCEPTS:
        server.receive(sender, msg)
        assert server.accepted_count() == before[5] + 1  # type: ignore[operator]
        assert sender not in server.waiting_for()
        assert sender not in server.excluded
        assert server.phase is phase
        return
    elif (phase, sender, kind) == (HEPhase.UPLOAD, HOLDER, HEUpload):
        server.receive(sender, msg)  # the holder's upload again, as accepted: a retry
    else:
        with pytest.raises(WrongPhase):
            server.receive(sender, msg)
    assert _snapshot(h) == before


def test_a_different_second_upload_excludes_its_sender() -> None:
    """The one refusal that changes state: a conflicting upload is evidence, not noise."""
    h = _server_at(HEPhase.UPLOAD)
    upload = h.sent[(MEMBER, HEUpload)]
    assert isinstance(upload, HEUpload)
    h.server.receive(MEMBER, upload)
    other = dataclasses.replace(upload, blobs=h.sent[(3, HEUpload)].blobs)  # type: ignore[attr-defined]
    with pytest.raises(ProtocolError):
        h.server.receive(MEMBER, other)
    assert MEMBER in h.server.excluded
    assert h.server.contributors == (HOLDER, MEMBER)


@pytest.mark.parametrize("phase", [HEPhase.COMPLETED, HEPhase.ABORTED])
def test_he_server_cannot_advance_or_abort_from_a_terminal_phase(phase: HEPhase) -> None:
    h = _server_at(phase)
    before = _snapshot(h)
    with pytest.raises(WrongPhase, match="cannot advance"):
        h.server.advance()
    with pytest.raises(WrongPhase, match="already"):
        h.server.abort("again")
    assert _snapshot(h) == before
    assert h.server.waiting_for() == set()


def test_he_server_phases_follow_the_documented_order() -> None:
    """join → keys → upload → completed."""
    h = HERound()
    seen = []
    while h.server.phase not in TERMINAL:
        seen.append(h.server.phase)
        h.step()
    assert seen == [HEPhase.JOIN, HEPhase.KEYS, HEPhase.UPLOAD]
    assert h.server.phase is HEPhase.COMPLETED
