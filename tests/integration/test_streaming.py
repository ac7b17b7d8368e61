"""Streaming accumulation (ARCHITECTURE.md; T47 at test size): memory bounded by the chunk.

An in-process aggregator (insecure, semi-honest, three clients) runs one
round at D = 8e6 (an 18 MB packed masked vector per client). Every masked
input goes through the servicer's Upload in 1 MiB chunks, called in process,
so tracemalloc sees exactly what the aggregator allocates for it: the upload
is spooled to disk, summed into the accumulator and copied into the event
log slice by slice. The peak stays a few MiB, far below one payload (the old
path held the payload two or three times over), and the sum is exact.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.server import AggregatorServer
from aggregator.settings import AggregatorSettings
from clients.training.synthetic import exact_levels
from protocol.client import ClientMachine
from protocol.he_model import model_sha256
from protocol.messages import ClientMessage, MaskedInput, RoundStart
from secagg.rng import DeterministicRandomSource
from secagg_pb.v1 import secagg_pb2 as pb
from tests.integration.harness import expected_sha256, wait_for
from tests.integration.test_request_auth import Context
from tests.integration.test_robustness import SEMI_HONEST_LAB
from tests.wire import parse_client_message

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIM = 8_000_000
ROSTER = (1, 2, 3)
LEVELS = 1 << 16
MIB = 1 << 20


def upload_chunks(msg: MaskedInput, size: int) -> Iterator[pb.UploadChunk]:
    """The upload as a client sends it, made lazily one chunk at a time."""
    digest = hashlib.sha256(msg.payload).digest()
    view = memoryview(msg.payload)
    total = len(msg.payload)
    for offset in range(0, total, size):
        yield pb.UploadChunk(
            client=msg.client,
            round=msg.round,
            upload_id=f"u{msg.client}",
            offset=offset,
            total_length=total,
            data=bytes(view[offset : offset + size]),
            sha256=digest if offset + size >= total else b"",
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AggregatorServer]:
    settings = AggregatorSettings(
        listen="127.0.0.1:0",
        insecure=True,
        profile="semi-honest",
        state_dir=str(tmp_path / "state"),
        dim=DIM,
        rounds=1,
        poll_wait_s=0.2,
        phase_timeout_s=120.0,
        rate_limit_per_s=0.0,
    )
    server = AggregatorServer(settings, clients=len(ROSTER))
    server.start()
    yield server
    server.stop(0)


def test_upload_memory_is_bounded_by_the_chunk_not_the_payload(server: AggregatorServer) -> None:
    coordinator, servicer = server.coordinator, server.servicer
    machines = {
        c: ClientMachine(c, rng=DeterministicRandomSource(f"stream-{c}"), policy=SEMI_HONEST_LAB)
        for c in ROSTER
    }
    after = dict.fromkeys(ROSTER, 0)
    epoch = 0

    def next_message(client: int) -> object:
        nonlocal epoch
        for _ in range(200):
            epoch, seq, msg, _finished = coordinator.poll(client, epoch, after[client], 0.2)
            if msg is not None:
                after[client] = seq
                return msg
        raise AssertionError(f"no message for client {client}")

    def step() -> dict[int, list[ClientMessage]]:
        replies = {}
        for c in ROSTER:
            msg = next_message(c)
            if isinstance(msg, RoundStart):
                raw = coordinator.model_bytes(msg.config.round)
                levels = exact_levels(c, msg.config.round, DIM, LEVELS)
                machines[c].set_levels(levels, weight=1, model_hash=model_sha256(raw))
            replies[c] = machines[c].handle(msg)  # type: ignore[arg-type]
        return replies

    for c in ROSTER:  # be present, so the driver starts the round
        coordinator.poll(c, 0, 0, 0.0)
    for _phase in ("advertise", "share"):
        for c, messages in step().items():
            for m in messages:
                coordinator.submit(c, m)
    masked = step()  # ShareBundle -> MaskedInput
    context = Context()
    peaks = []
    for c in ROSTER:
        (msg,) = masked[c]
        assert isinstance(msg, MaskedInput)
        payload = len(msg.payload)
        tracemalloc.start()
        servicer.Upload(upload_chunks(msg, MIB), context)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        del msg, masked[c]
    assert payload > 17 * MIB  # 8e6 coordinates of 18 bits
    # Per upload: a chunk or two in flight, one unpacking slice of 131,072 values, a 1 MiB
    # copy into SQLite. Holding the payload even once would exceed this.
    assert max(peaks) < 12 * MIB, [p / MIB for p in peaks]
    assert not list((Path(server.settings.state_dir) / "spool").iterdir())  # spool emptied

    for c, messages in step().items():  # UnmaskRequest -> UnmaskShares
        for m in messages:
            coordinator.submit(c, m)
    assert wait_for(lambda: coordinator.history, 10)
    record = coordinator.history[0]
    assert record.completed and record.survivors == list(ROSTER)
    assert record.total_sha256 == expected_sha256(list(ROSTER), 0, DIM, LEVELS)
    # The event log holds each masked input exactly as a unary Submit would have.
    bodies = [e.body for e in coordinator.store.events(record.epoch) if e.kind == "message"]
    uploaded = [parse_client_message(b) for b in bodies if b is not None and len(b) > MIB]
    assert sorted(m.client for m in uploaded if isinstance(m, MaskedInput)) == list(ROSTER)
    assert all(b for b in bodies)
