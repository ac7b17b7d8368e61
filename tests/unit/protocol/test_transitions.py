"""T07: the state-transition tables of the client and the server, one test per cell.

Client: every reachable :class:`ClientPhase` × every server message type.
Either the documented transition happens (next phase, the documented reply),
or the client aborts (phase ABORTED and exactly one ClientAbort reply);
ServerAbort aborts silently; terminal phases ignore everything.

Server: every :class:`ServerPhase` × every client message type. A message is
accepted only in its own phase (ClientAbort in every collecting phase);
otherwise WrongPhase, and nothing changes. ABORTED answers RoundAborted,
COMPLETED WrongPhase, and neither can advance.
"""

from __future__ import annotations

from functools import cache

import pytest

from protocol.client import TERMINAL, ClientPhase
from protocol.config import Profile, RoundConfig
from protocol.errors import RoundAborted, UnexpectedCall, WrongPhase
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    GraphNonces,
    GraphReveal,
    KeyList,
    MaskedInput,
    RoundComplete,
    RoundStart,
    ServerAbort,
    ServerMessage,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
)
from protocol.server import ServerPhase
from tests.unit.protocol.helpers import COLLECTING, Harness, Replies, small_config

PROFILES: tuple[Profile, ...] = ("active", "semi-honest")
SERVER_TYPES: tuple[type, ...] = (
    RoundStart,
    KeyList,
    GraphNonces,
    ShareBundle,
    ConsistencyRequest,
    UnmaskRequest,
    RoundComplete,
    ServerAbort,
)
CLIENT_TYPES: tuple[type, ...] = (
    AdvertiseKeys,
    GraphReveal,
    ShareKeys,
    MaskedInput,
    ConsistencySignature,
    UnmaskShares,
    ClientAbort,
)
SEED = "t07"
ME = 1  # the client under test


def _config(profile: Profile) -> RoundConfig:
    """SecAgg+ (k = 2 of 5), so the graph commit-reveal phase is in the tables too."""
    return small_config(5, dim=4, degree=2, profile=profile)


# ---------------------------------------------------------------------- client table

#: (profile, phase, message type) -> (next phase, reply types)
DOCUMENTED: dict[tuple[Profile, ClientPhase, type], tuple[ClientPhase, tuple[type, ...]]] = {}
for _p in PROFILES:
    DOCUMENTED[(_p, ClientPhase.AWAITING_CONFIG, RoundStart)] = (
        ClientPhase.AWAITING_KEYS,
        (AdvertiseKeys,),
    )
    DOCUMENTED[(_p, ClientPhase.AWAITING_KEYS, KeyList)] = (
        ClientPhase.AWAITING_GRAPH,
        (GraphReveal,),
    )
    DOCUMENTED[(_p, ClientPhase.AWAITING_GRAPH, GraphNonces)] = (
        ClientPhase.AWAITING_SHARES,
        (ShareKeys,),
    )
    DOCUMENTED[(_p, ClientPhase.AWAITING_UNMASK, UnmaskRequest)] = (
        ClientPhase.UNMASKED,
        (UnmaskShares,),
    )
    DOCUMENTED[(_p, ClientPhase.UNMASKED, RoundComplete)] = (ClientPhase.COMPLETED, ())
DOCUMENTED[("active", ClientPhase.AWAITING_SHARES, ShareBundle)] = (
    ClientPhase.AWAITING_CONSISTENCY,
    (MaskedInput,),
)
DOCUMENTED[("active", ClientPhase.AWAITING_CONSISTENCY, ConsistencyRequest)] = (
    ClientPhase.AWAITING_UNMASK,
    (ConsistencySignature,),
)
DOCUMENTED[("semi-honest", ClientPhase.AWAITING_SHARES, ShareBundle)] = (
    ClientPhase.AWAITING_UNMASK,
    (MaskedInput,),
)


def _reachable(profile: Profile) -> list[ClientPhase]:
    phases = list(ClientPhase)
    if profile == "semi-honest":
        phases.remove(ClientPhase.AWAITING_CONSISTENCY)
    return phases


CLIENT_CELLS = [
    pytest.param(profile, phase, kind, id=f"{profile}-{phase.value}-{kind.__name__}")
    for profile in PROFILES
    for phase in _reachable(profile)
    for kind in SERVER_TYPES
]


@cache
def _server_catalog(profile: Profile) -> dict[type, ServerMessage]:
    """One real message of every server type, as sent to client ME in a full round."""
    h = Harness(_config(profile), seed=SEED)
    h.run()
    catalog: dict[type, ServerMessage] = {type(m): m for c, m in h.down if c == ME}
    catalog[ServerAbort] = ServerAbort("test abort")
    if profile == "semi-honest":  # never sent in this profile: borrow the active one
        catalog[ConsistencyRequest] = _server_catalog("active")[ConsistencyRequest]
    assert set(catalog) == set(SERVER_TYPES)
    return catalog


def _client_at(profile: Profile, phase: ClientPhase) -> Harness:
    """A round stepped until client ME is in ``phase`` (its next request, if any, pending)."""
    no_input = {ME} if phase is ClientPhase.AWAITING_INPUT else set()
    h = Harness(_config(profile), seed=SEED, without_input=no_input)
    me = h.clients[ME]
    if phase is ClientPhase.ABORTED:
        assert me.handle(ServerAbort("operator stop")) == []
    while me.phase is not phase:
        if h.server.phase in COLLECTING:
            replies = h.deliver_down()
            if me.phase is phase:  # AWAITING_INPUT: no server message leads on from it
                break
            h.deliver_up(replies)
            h.advance()
        else:
            h.finish()
    assert me.phase is phase
    return h


def test_every_client_phase_is_covered() -> None:
    covered = {phase for _, phase, _ in (c.values for c in CLIENT_CELLS)}
    assert covered == set(ClientPhase)


@pytest.mark.parametrize(("profile", "phase", "kind"), CLIENT_CELLS)
def test_client_transition(profile: Profile, phase: ClientPhase, kind: type) -> None:
    h = _client_at(profile, phase)
    me = h.clients[ME]
    pending = h.pending_for(ME)
    msg: ServerMessage = (
        pending
        if pending is not None and isinstance(pending, kind)
        else _server_catalog(profile)[kind]
    )
    reason_before = me.abort_reason

    replies = me.handle(msg)

    if phase in TERMINAL:
        assert replies == []
        assert me.phase is phase
        assert me.abort_reason == reason_before
    elif kind is ServerAbort:
        assert replies == []
        assert me.phase is ClientPhase.ABORTED
        assert me.abort_reason == "server aborted: test abort"
    elif (profile, phase, kind) in DOCUMENTED:
        next_phase, reply_types = DOCUMENTED[(profile, phase, kind)]
        assert me.phase is next_phase, me.abort_reason
        assert tuple(type(r) for r in replies) == reply_types
        assert all(r.client == ME and r.round == h.config.round for r in replies)
        assert me.abort_reason is None
    else:
        assert me.phase is ClientPhase.ABORTED
        assert len(replies) == 1
        (reply,) = replies
        assert isinstance(reply, ClientAbort)
        assert reply.client == ME
        assert reply.round == h.config.round
        assert reply.reason == me.abort_reason
        assert f"unexpected {kind.__name__} in phase {phase.value}" == reply.reason


def test_documented_cells_exist() -> None:
    """Every documented transition is exercised by some cell (a typo in the table fails)."""
    cells = {tuple(c.values) for c in CLIENT_CELLS}
    assert set(DOCUMENTED) <= cells


def test_input_is_set_once() -> None:
    h = Harness(_config("active"), seed=SEED)
    with pytest.raises(UnexpectedCall, match="once"):
        h.set_input(ME)
    with pytest.raises(UnexpectedCall, match="once"):
        h.clients[ME].set_input(h.levels[ME].astype(float), weight=1, model_hash=b"\0" * 32)


def test_set_input_when_awaiting_it_sends_the_masked_input() -> None:
    h = _client_at("active", ClientPhase.AWAITING_INPUT)
    replies = h.set_input(ME)
    assert [type(r) for r in replies] == [MaskedInput]
    assert h.clients[ME].phase is ClientPhase.AWAITING_CONSISTENCY
    with pytest.raises(UnexpectedCall):
        h.set_input(ME)


def test_set_input_after_a_server_abort_is_refused() -> None:
    h = Harness(_config("active"), seed=SEED, without_input={ME})
    me = h.clients[ME]
    me.handle(ServerAbort("stop"))
    with pytest.raises(UnexpectedCall, match="aborted"):
        h.set_input(ME)
    assert me.phase is ClientPhase.ABORTED


def test_completed_client_refuses_input_and_ignores_a_new_round_start() -> None:
    h = Harness(_config("active"), seed=SEED)
    h.run()
    me = h.clients[ME]
    assert me.phase is ClientPhase.COMPLETED
    with pytest.raises(UnexpectedCall):
        h.set_input(ME)
    assert me.handle(RoundStart(h.config)) == []
    assert me.phase is ClientPhase.COMPLETED


# ---------------------------------------------------------------------- server table

SERVER_CELLS = [
    pytest.param(phase, kind, id=f"{phase.value}-{kind.__name__}")
    for phase in ServerPhase
    for kind in CLIENT_TYPES
]
_ACCEPTS = {
    ServerPhase.ADVERTISE: AdvertiseKeys,
    ServerPhase.GRAPH: GraphReveal,
    ServerPhase.SHARE: ShareKeys,
    ServerPhase.MASKED: MaskedInput,
    ServerPhase.CONSISTENCY: ConsistencySignature,
    ServerPhase.UNMASK: UnmaskShares,
}


@cache
def _accepted_earlier(phase: ServerPhase, kind: type) -> bool:
    """Whether ME's message of ``kind`` was accepted in a phase before ``phase``."""
    closed = list(COLLECTING) if phase is ServerPhase.COMPLETED else []
    if phase in COLLECTING:
        closed = list(COLLECTING)[: list(COLLECTING).index(phase)]
    return any(_ACCEPTS[p] is kind for p in closed)


def _client_catalog() -> dict[type, ClientMessage]:
    """One real message of every client type, as sent by client ME in a full round."""
    h = Harness(_config("active"), seed=SEED)
    h.run()
    catalog: dict[type, ClientMessage] = {type(s.msg): s.msg for s in h.up if s.client == ME}
    catalog[ClientAbort] = ClientAbort(ME, h.config.round, "test abort")
    assert set(catalog) == set(CLIENT_TYPES)
    return catalog


def _server_at(phase: ServerPhase) -> tuple[Harness, Replies]:
    """A round whose server collects ``phase``, with the clients' answers held back."""
    h = Harness(_config("active"), seed=SEED)
    if phase is ServerPhase.ABORTED:
        h.step(drop=[3])  # SecAgg+ needs every key in U1
        assert h.server.phase is ServerPhase.ABORTED
        return h, {}
    while h.server.phase is not phase:
        assert h.server.phase in COLLECTING
        h.step()
    return h, (h.deliver_down() if phase in COLLECTING else {})


def _snapshot(h: Harness) -> tuple[object, ...]:
    s = h.server
    return (s.phase, s.waiting_for(), dict(s.excluded), s.ready_to_advance(), s.abort_reason)


def test_every_server_phase_is_covered() -> None:
    assert {c.values[0] for c in SERVER_CELLS} == set(ServerPhase)


@pytest.mark.parametrize(("phase", "kind"), SERVER_CELLS)
def test_server_transition(phase: ServerPhase, kind: type) -> None:
    h, replies = _server_at(phase)
    server = h.server
    if phase in _ACCEPTS and kind is _ACCEPTS[phase]:
        msg = replies[ME][0]
        assert isinstance(msg, kind)
    else:
        msg = _client_catalog()[kind]
    before = _snapshot(h)
    assert ME in server.waiting_for() or phase not in COLLECTING

    if phase is ServerPhase.ABORTED:
        with pytest.raises(RoundAborted) as aborted:
            server.receive(ME, msg)
        assert aborted.value.status == "ABORTED"
        assert _snapshot(h) == before
    elif _accepted_earlier(phase, kind):
        # The very message ME had accepted in a closed phase: a retry whose ack was
        # lost (e.g. across a restart) gets the stored answer, and nothing changes.
        server.receive(ME, msg)
        assert _snapshot(h) == before
    elif phase is ServerPhase.COMPLETED:
        with pytest.raises(WrongPhase, match="completed") as completed:
            server.receive(ME, msg)
        assert completed.value.status == "FAILED_PRECONDITION"
        assert _snapshot(h) == before
    elif kind is ClientAbort:
        server.receive(ME, msg)
        assert server.excluded[ME] == "client aborted: test abort"
        assert ME not in server.waiting_for()
        assert server.phase is phase
    elif kind is _ACCEPTS[phase]:
        server.receive(ME, msg)
        assert ME not in server.waiting_for()
        assert ME not in server.excluded
        assert server.phase is phase
    else:
        with pytest.raises(WrongPhase, match="not accepted in phase") as info:
            server.receive(ME, msg)
        assert info.value.status == "FAILED_PRECONDITION"
        assert _snapshot(h) == before


@pytest.mark.parametrize("phase", [ServerPhase.COMPLETED, ServerPhase.ABORTED])
def test_server_cannot_advance_from_a_terminal_phase(phase: ServerPhase) -> None:
    h, _ = _server_at(phase)
    before = _snapshot(h)
    with pytest.raises(WrongPhase, match="cannot advance"):
        h.server.advance()
    assert _snapshot(h) == before
    assert h.server.ready_to_advance() is False
    assert h.server.waiting_for() == set()


@pytest.mark.parametrize("profile", PROFILES)
def test_server_phases_follow_the_documented_order(profile: Profile) -> None:
    """advertise → graph → share → masked → (consistency, active only) → unmask → completed."""
    order = [p for p in COLLECTING if profile == "active" or p is not ServerPhase.CONSISTENCY]
    h = Harness(_config(profile), seed=SEED)
    seen = []
    while h.server.phase in COLLECTING:
        seen.append(h.server.phase)
        assert not h.server.ready_to_advance()
        h.deliver_up(h.deliver_down())
        assert h.server.ready_to_advance()
        h.advance()
    assert seen == order
    assert h.server.phase is ServerPhase.COMPLETED
