"""The plain machines' transition tables, one test per cell (as test_transitions.py for SecAgg).

Client: every reachable phase × every server message type. RoundStart in
AWAITING_CONFIG and RoundComplete in UNMASKED are the documented transitions;
ServerAbort aborts silently; anything else aborts with exactly one ClientAbort;
terminal phases ignore everything.

Server: every phase × every client message type. Only MaskedInput (and
ClientAbort, which excludes its sender) is accepted, and only while MASKED;
anything else raises and changes nothing.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from protocol.build import make_config
from protocol.client import ClientPhase
from protocol.config import RoundConfig
from protocol.errors import RoundAborted, WrongPhase
from protocol.messages import (
    ClientAbort,
    ClientMessage,
    MaskedInput,
    RoundComplete,
    RoundStart,
    ServerAbort,
    ServerMessage,
)
from protocol.plain import PlainClient, PlainServer
from protocol.policy import ClientPolicy
from protocol.server import ServerPhase
from tests.unit.protocol.test_transitions import (
    CLIENT_TYPES,
    SERVER_TYPES,
    _client_catalog,
    _server_catalog,
)

ME = 1
DIM = 4
PHASES = (
    ClientPhase.AWAITING_CONFIG,  # input already set
    ClientPhase.AWAITING_INPUT,  # started, input not yet set
    ClientPhase.UNMASKED,  # update sent
    ClientPhase.COMPLETED,
    ClientPhase.ABORTED,
)
#: (phase, message type) -> (next phase, reply types)
DOCUMENTED: dict[tuple[ClientPhase, type], tuple[ClientPhase, tuple[type, ...]]] = {
    (ClientPhase.AWAITING_CONFIG, RoundStart): (ClientPhase.UNMASKED, (MaskedInput,)),
    (ClientPhase.UNMASKED, RoundComplete): (ClientPhase.COMPLETED, ()),
}


@cache
def _config() -> RoundConfig:
    base = make_config(clients=3, dim=DIM, profile="semi-honest", max_weight=3)
    return dataclasses.replace(base, profile="plain")


def _client() -> PlainClient:
    return PlainClient(ME, policy=ClientPolicy().with_opt_in("plain"))


def _set_input(client: PlainClient) -> list[ClientMessage]:
    return client.set_input(np.full(DIM, 0.25), weight=2, model_hash=_config().model_hash)


def _client_at(phase: ClientPhase) -> PlainClient:
    client = _client()
    if phase is not ClientPhase.AWAITING_INPUT:
        _set_input(client)
    if phase is ClientPhase.ABORTED:
        client.handle(ServerAbort("operator stop"))
    elif phase is not ClientPhase.AWAITING_CONFIG:
        client.handle(RoundStart(_config()))
        if phase is ClientPhase.COMPLETED:
            client.handle(RoundComplete())
    assert client.phase is phase
    return client


def _server_message(kind: type) -> ServerMessage:
    if kind is RoundStart:
        return RoundStart(_config())
    if kind is ServerAbort:
        return ServerAbort("test abort")
    return _server_catalog("active")[kind]


CLIENT_CELLS = [
    pytest.param(phase, kind, id=f"{phase.value}-{kind.__name__}")
    for phase in PHASES
    for kind in SERVER_TYPES
]


@pytest.mark.parametrize(("phase", "kind"), CLIENT_CELLS)
def test_plain_client_transition(phase: ClientPhase, kind: type) -> None:
    client = _client_at(phase)
    reason_before = client.abort_reason

    replies = client.handle(_server_message(kind))

    if phase in (ClientPhase.COMPLETED, ClientPhase.ABORTED):
        assert replies == []
        assert client.phase is phase
        assert client.abort_reason == reason_before
    elif kind is ServerAbort:
        assert replies == []
        assert client.phase is ClientPhase.ABORTED
        assert client.abort_reason == "server aborted: test abort"
    elif (phase, kind) in DOCUMENTED:
        next_phase, reply_types = DOCUMENTED[(phase, kind)]
        assert client.phase is next_phase, client.abort_reason
        assert tuple(type(r) for r in replies) == reply_types
        assert all(r.client == ME and r.round == _config().round for r in replies)
        assert client.abort_reason is None
    else:
        assert client.phase is ClientPhase.ABORTED
        assert [type(r) for r in replies] == [ClientAbort]
        assert replies[0].client == ME
        assert replies[0].reason == client.abort_reason
        assert client.abort_reason == f"unexpected {kind.__name__} in phase {phase.value}"


def test_a_second_round_start_before_the_input_aborts() -> None:
    """AWAITING_INPUT × RoundStart: the round already started; a restart is refused."""
    client = _client()
    assert client.handle(RoundStart(_config())) == []
    assert client.phase is ClientPhase.AWAITING_INPUT
    replies = client.handle(RoundStart(_config()))
    assert [type(r) for r in replies] == [ClientAbort]
    assert client.abort_reason == "unexpected RoundStart in phase awaiting-input"
    assert _set_input(client) == []  # an aborted client sends nothing


def test_input_set_after_the_start_sends_the_update() -> None:
    client = _client()
    client.handle(RoundStart(_config()))
    replies = _set_input(client)
    assert [type(r) for r in replies] == [MaskedInput]
    assert client.phase is ClientPhase.UNMASKED


# ---------------------------------------------------------------------- server table

SERVER_PHASES = (ServerPhase.ADVERTISE, ServerPhase.MASKED, ServerPhase.COMPLETED)
SERVER_CELLS = [
    pytest.param(phase, kind, id=f"{phase.value}-{kind.__name__}")
    for phase in (*SERVER_PHASES, ServerPhase.ABORTED)
    for kind in CLIENT_TYPES
]


def _update() -> MaskedInput:
    client = _client()
    _set_input(client)
    (msg,) = client.handle(RoundStart(_config()))
    assert isinstance(msg, MaskedInput)
    return msg


def _client_message(kind: type) -> ClientMessage:
    if kind is MaskedInput:
        return _update()
    if kind is ClientAbort:
        return ClientAbort(ME, _config().round, "test abort")
    msg = _client_catalog()[kind]
    return dataclasses.replace(msg, round=_config().round)  # type: ignore[type-var]


def _server_at(phase: ServerPhase) -> PlainServer:
    server = PlainServer(_config())
    if phase is ServerPhase.ADVERTISE:
        return server
    server.start()
    if phase is ServerPhase.ABORTED:
        server.abort("operator stop")
    elif phase is ServerPhase.COMPLETED:
        server.receive(2, dataclasses.replace(_update(), client=2))
        server.advance()
    assert server.phase is phase
    return server


def _snapshot(s: PlainServer) -> tuple[object, ...]:
    return (
        s.phase,
        s.waiting_for(),
        dict(s.excluded),
        s.ready_to_advance(),
        s.abort_reason,
        s.accepted_count(),
        s._sum.tobytes(),
    )


@pytest.mark.parametrize(("phase", "kind"), SERVER_CELLS)
def test_plain_server_transition(phase: ServerPhase, kind: type) -> None:
    server = _server_at(phase)
    msg = _client_message(kind)
    before = _snapshot(server)

    if phase is ServerPhase.MASKED and kind in (MaskedInput, ClientAbort):
        server.receive(ME, msg)
        assert ME not in server.waiting_for()
        assert server.phase is ServerPhase.MASKED
        if kind is MaskedInput:
            assert server.survivors == (ME,)
            assert ME not in server.excluded
        else:
            assert server.excluded[ME] == "client aborted: test abort"
            assert server.accepted_count() == 0
        return
    if phase is ServerPhase.ABORTED:
        with pytest.raises(RoundAborted):
            server.receive(ME, msg)
    elif phase is ServerPhase.MASKED:
        with pytest.raises(WrongPhase, match="not accepted in a plain round"):
            server.receive(ME, msg)
    else:
        with pytest.raises(WrongPhase, match=f"is {phase.value}"):
            server.receive(ME, msg)
    assert _snapshot(server) == before


def test_the_same_update_twice_is_accepted_once() -> None:
    server = _server_at(ServerPhase.MASKED)
    server.receive(ME, _update())
    before = _snapshot(server)
    server.receive(ME, _update())
    assert _snapshot(server) == before


@pytest.mark.parametrize("phase", [ServerPhase.ADVERTISE, ServerPhase.COMPLETED])
def test_plain_server_cannot_advance_outside_masked(phase: ServerPhase) -> None:
    server = _server_at(phase)
    before = _snapshot(server)
    with pytest.raises(WrongPhase, match="cannot advance"):
        server.advance()
    assert _snapshot(server) == before


def test_plain_server_aborted_cannot_advance_or_abort_again() -> None:
    server = _server_at(ServerPhase.ABORTED)
    before = _snapshot(server)
    with pytest.raises(WrongPhase):
        server.advance()
    with pytest.raises(WrongPhase, match="already aborted"):
        server.abort("again")
    assert _snapshot(server) == before
