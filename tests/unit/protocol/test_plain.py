"""The plain baseline: refused unless allowed, sums exactly, validates what it sums."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocol.build import make_config
from protocol.client import ClientMachine, ClientPhase
from protocol.config import RoundConfig
from protocol.errors import ConflictingMessage, InvalidMessage
from protocol.messages import ClientAbort, MaskedInput, RoundStart
from protocol.plain import PlainClient, PlainServer, encode_plain
from protocol.policy import ClientPolicy
from protocol.server import ServerMachine
from secagg.errors import ParameterError
from secagg.rng import DeterministicRandomSource


def plain_config(n: int = 3, dim: int = 5) -> RoundConfig:
    base = make_config(clients=n, dim=dim, profile="semi-honest", max_weight=3)
    return dataclasses.replace(base, profile="plain")


def test_clients_refuse_plain_rounds_by_default() -> None:
    config = plain_config()
    client = PlainClient(1)
    client.set_input(np.zeros(5), weight=1, model_hash=config.model_hash)
    replies = client.handle(RoundStart(config))
    assert [type(m) for m in replies] == [ClientAbort]
    assert "clear" in (client.abort_reason or "")


def test_secure_machines_refuse_the_plain_profile() -> None:
    config = plain_config()
    with pytest.raises(ParameterError):
        ServerMachine(config)
    machine = ClientMachine(1, rng=DeterministicRandomSource(0))
    assert [type(m) for m in machine.handle(RoundStart(config))] == [ClientAbort]
    assert machine.phase is ClientPhase.ABORTED


def test_plain_round_sums_weighted_updates() -> None:
    config = plain_config()
    server = PlainServer(config)
    inputs = {1: (np.full(5, 0.5), 2), 2: (np.full(5, -0.25), 1), 3: (np.linspace(-1, 1, 5), 3)}
    clients = {c: PlainClient(c, policy=ClientPolicy().with_opt_in("plain")) for c in inputs}
    for c, msg in server.start():
        clients[c].set_input(inputs[c][0], weight=inputs[c][1], model_hash=config.model_hash)
        for reply in clients[c].handle(msg):
            server.receive(c, reply)
    assert server.ready_to_advance()
    for c, msg in server.advance():
        clients[c].handle(msg)
    assert server.result is not None
    expected = sum(w * x for x, w in inputs.values()) / 6
    assert np.allclose(server.result.weighted_mean(), expected, atol=1e-6)
    assert all(m.phase is ClientPhase.COMPLETED for m in clients.values())


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        encode_plain(np.zeros(4), 1),  # wrong length
        encode_plain(np.full(5, np.nan), 1),
        encode_plain(np.full(5, 3.0), 1),  # beyond the clip range
        encode_plain(np.zeros(5), 9),  # weight above max_weight
    ],
)
def test_plain_server_rejects_bad_updates_without_counting_them(payload: bytes) -> None:
    server = PlainServer(plain_config())
    server.start()
    with pytest.raises(InvalidMessage):
        server.receive(1, MaskedInput(1, 0, payload))
    assert server.accepted_count() == 0 and 1 in server.excluded


def test_plain_server_conflicting_resend_is_refused() -> None:
    server = PlainServer(plain_config())
    server.start()
    server.receive(1, MaskedInput(1, 0, encode_plain(np.zeros(5), 1)))
    server.receive(1, MaskedInput(1, 0, encode_plain(np.zeros(5), 1)))  # identical: fine
    with pytest.raises(ConflictingMessage):
        server.receive(1, MaskedInput(1, 0, encode_plain(np.ones(5) * 0.1, 1)))
    assert server.accepted_count() == 1
