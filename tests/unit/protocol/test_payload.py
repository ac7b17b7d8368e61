"""The payload seam: the machines call a plugged-in variant, and only at its three points."""

from __future__ import annotations

import pytest

from protocol.client import ClientPhase
from protocol.errors import InvalidMessage
from protocol.he_masked import BfvServerPayload
from protocol.messages import MaskedInput
from protocol.payload import InMemory, RingClientPayload
from protocol.server import ServerMachine, ServerPhase
from secagg import he
from tests.unit.protocol.helpers import Harness, small_config


class Gated(RingClientPayload):
    """SecAgg's ring payload that is not ready until opened (as the hybrid waits for its key)."""

    def __init__(self) -> None:
        self.open = False
        self.cleared = 0

    def ready(self) -> bool:
        return self.open

    def clear(self) -> None:
        self.cleared += 1


def test_a_payload_that_is_not_ready_holds_the_upload_until_resume() -> None:
    h = Harness(small_config(4, dim=10), seed="gated")
    gate = Gated()
    h.clients[1].payload = gate
    h.run_until(ServerPhase.MASKED)
    replies = h.deliver_down()
    assert 1 not in replies and h.clients[1].phase is ClientPhase.AWAITING_INPUT
    assert h.clients[1].resume() == []  # still not ready: nothing leaves
    gate.open = True
    (upload,) = h.clients[1].resume()
    assert isinstance(upload, MaskedInput)
    assert h.clients[1].resume() == []  # sent once: a second resume does nothing
    replies[1] = [upload]
    assert not h.deliver_up(replies)
    h.advance()
    h.run()
    h.assert_exact((1, 2, 3, 4))
    assert gate.cleared == 1  # the round's end drops the payload's secrets too


def test_a_payload_read_whole_refuses_the_streamed_path() -> None:
    config = small_config(4, dim=10)
    roster = Harness(config).roster
    payload = BfvServerPayload(config, he.BFV_8192)
    server = ServerMachine(config, roster=roster, payload=payload)
    assert server.payload is payload
    with pytest.raises(InvalidMessage, match="send them whole"):
        server.receive_masked(1, config.round, InMemory(b"\x00" * 16))
