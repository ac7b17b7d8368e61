"""Streamed uploads: spool files, the sliced event log, and the header the codec predicts."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from aggregator import spool
from aggregator.spool import SpooledPayload
from aggregator.store import STREAM_SLICE, Store
from protocol.messages import MaskedInput
from secagg_pb import codec
from tests.wire import parse_client_message


def spooled(tmp_path: Path, data: bytes, piece: int = 1000) -> SpooledPayload:
    payload = SpooledPayload(tmp_path)
    for offset in range(0, len(data), piece):
        payload.write(data[offset : offset + piece])
    return payload


def test_spool_reads_back_what_was_written_and_deletes_itself(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    with spooled(tmp_path, data) as payload:
        assert payload.length == len(data)
        assert payload.read(0, len(data)) == data
        assert payload.read(9_990, 100) == data[9_990:]  # short only past the end
        path = payload.path
        assert path.exists()
    assert not path.exists()
    payload.close()  # idempotent


def test_clear_removes_only_leftover_uploads(tmp_path: Path) -> None:
    (tmp_path / "a.upload").write_bytes(b"x")
    (tmp_path / "keep.txt").write_bytes(b"y")
    spool.clear(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    spool.clear(tmp_path / "new")  # creates the folder
    assert (tmp_path / "new").is_dir()


@pytest.mark.parametrize(
    ("client", "round_", "size"), [(0, 0, 0), (1, 0, 5), (3, 7, 0), (2**63 - 1, 2**64 - 1, 300)]
)
def test_header_plus_payload_is_the_serialised_message(client: int, round_: int, size: int) -> None:
    payload = os.urandom(size)
    expected = codec.client_to_proto(MaskedInput(client, round_, payload)).SerializeToString()
    assert codec.masked_input_header(client, round_, size) + payload == expected


def test_log_stream_round_trips_through_events(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    data = os.urandom(2 * STREAM_SLICE + 123)
    header = codec.masked_input_header(4, 0, len(data))
    store.begin_attempt(1, 0, b"config", 0.0)
    with spooled(tmp_path, data, piece=65_536) as payload:
        store.log_stream(1, "message", at=1.0, client=4, header=header, source=payload)
    store.log(1, "advance", at=2.0, note="masked")
    events = list(store.events(1))
    assert [e.kind for e in events] == ["message", "advance"]
    assert parse_client_message(events[0].body or b"") == MaskedInput(4, 0, data)
    assert store.count_messages(1) == 1
    store.close()


class Failing:
    """A source whose second slice cannot be read (disk error, say)."""

    length = 3 * STREAM_SLICE

    def read(self, offset: int, size: int) -> bytes:
        if offset:
            raise OSError("read error")
        return bytes(size)


def test_log_stream_is_all_or_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")
    store.begin_attempt(1, 0, b"config", 0.0)
    with pytest.raises(OSError, match="read error"):
        store.log_stream(1, "message", at=1.0, client=4, header=b"h", source=Failing())
    assert list(store.events(1)) == [] and store.count_messages(1) == 0
    assert store.pragma("page_count")  # the connection is usable, no transaction left open
    store.log(1, "advance", at=2.0, note="after")
    assert [e.note for e in store.events(1)] == ["after"]
    store.close()


def test_log_stream_keeps_no_memory_per_call(tmp_path: Path) -> None:
    """Regression: sqlite3's blobopen kept a reference per call (a soak-test leak)."""
    store = Store(tmp_path / "state.sqlite")
    store.begin_attempt(1, 0, b"config", 0.0)
    with spooled(tmp_path, b"p" * 100) as payload:

        def log_many(count: int) -> None:
            for _ in range(count):
                store.log_stream(1, "message", at=1.0, client=4, header=b"h", source=payload)

        log_many(50)  # warm caches
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        log_many(500)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    assert grown < 500 * 40, grown  # the leak was ~90 bytes per call
    store.close()
