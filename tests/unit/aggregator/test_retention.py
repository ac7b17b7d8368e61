"""Retention of the event log and checkpoints (aggregator/store.py, ``Store.prune``).

A store filled with synthetic round attempts (inline bodies, bodies logged in
slices, checkpoints) stands in for the coordinator; the coordinator's part
(pruning after the commit, replay after a restart) is exercised against a
live aggregator in tests/integration/test_retention.py. The kill -9 cases
run ``prune`` in a child process that dies at a named fault point.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from aggregator.store import Retention, Store, StoreError
from clients.lab.cluster import child_env
from secagg.errors import ParameterError

SLICED = 300_000  # bytes per client per round logged in slices (a masked input)


@dataclass(frozen=True)
class Memory:
    """A body held in memory, as :class:`aggregator.store.Readable`."""

    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]


def nonce(epoch: int, client: int) -> bytes:
    return hashlib.sha256(f"{epoch}/{client}".encode()).digest()[:16]


def play_round(
    store: Store, epoch: int, round_: int, *, clients: int = 3, done: bool = True
) -> None:
    """One attempt: a small and a sliced message per client, an advance; then its checkpoint."""
    store.begin_attempt(epoch, round_, b"config", float(epoch))
    for c in range(1, clients + 1):
        store.log(epoch, "message", at=1.0, client=c, body=b"keys" * 50, nonce=nonce(epoch, c))
        body = Memory(os.urandom(SLICED))
        store.log_stream(epoch, "message", at=1.0, client=c, header=b"hdr", source=body)
    store.log(epoch, "advance", at=2.0, note="masked")
    if done:
        store.finish_attempt(epoch, "completed")
        store.save_checkpoint(round_ + 1, np.full(64, round_, dtype=np.float32))


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return list(db.execute(sql))
    finally:
        db.close()


def state_bytes(store: Store) -> int:
    return sum(
        f.stat().st_size
        for f in (store.path, store.path.with_name(store.path.name + "-wal"))
        if f.exists()
    )


def test_old_bodies_are_deleted_and_digests_nonces_and_the_running_attempt_stay(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "state.sqlite", retention=Retention(keep_rounds=2))
    for r in range(5):
        play_round(store, r + 1, r)
    play_round(store, 6, 5, done=False)  # round 5 is running
    pruned = store.prune(5, at=99.0)
    # Rounds 0-2 are more than 2 completed rounds old; 3, 4 and the running 5 stay.
    assert pruned.attempts == 3
    assert pruned.body_bytes == 3 * 3 * (200 + 3 + SLICED)
    for epoch in (1, 2, 3):
        with pytest.raises(StoreError, match="pruned"):
            list(store.events(epoch))
    for epoch in (4, 5, 6):
        events = list(store.events(epoch))  # digests verified
        assert [e.body is not None for e in events if e.kind == "message"] == [True] * 6
        assert {e.nonce for e in events if e.nonce} == {nonce(epoch, c) for c in (1, 2, 3)}
    store.close()
    path = tmp_path / "state.sqlite"
    # The audit trail stays: every event row with its digest (and nonce), no body.
    old = rows(path, "SELECT digest, body, nonce FROM events WHERE epoch <= 3 AND kind='message'")
    assert len(old) == 18 and all(d is not None and b is None for d, b, _ in old)
    assert {n for _, _, n in old if n} == {nonce(e, c) for e in (1, 2, 3) for c in (1, 2, 3)}
    parts = rows(path, "SELECT DISTINCT e.epoch FROM event_parts p JOIN events e USING (seq)")
    assert sorted(int(str(e)) for (e,) in parts) == [4, 5, 6]
    assert rows(path, "SELECT epoch, pruned_at FROM attempts WHERE pruned_at IS NOT NULL") == [
        (1, 99.0),
        (2, 99.0),
        (3, 99.0),
    ]


def test_aborted_attempts_go_with_their_round_and_prune_is_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite", retention=Retention(keep_rounds=1))
    play_round(store, 1, 0, done=False)
    store.finish_attempt(1, "aborted")  # round 0's first attempt aborted, the second completed
    play_round(store, 2, 0)
    play_round(store, 3, 1)
    assert store.prune(1, at=1.0).attempts == 0  # round 0 is the last completed round
    assert store.prune(2, at=2.0).attempts == 2  # both attempts of round 0
    assert store.prune(2, at=3.0) == store.prune(2, at=4.0)  # nothing left to do
    assert store.prune(2, at=5.0).attempts == 0
    assert store.retained()["attempts_pruned"] == 2
    assert list(store.events(3))  # round 1's bodies are still there


def test_keep_zero_keeps_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite")  # the Store default: no retention
    for r in range(4):
        play_round(store, r + 1, r)
    assert store.prune(4, at=1.0).attempts == 0
    assert all(list(store.events(e)) for e in (1, 2, 3, 4))
    assert len(list((tmp_path / "checkpoints").glob("model-*.npy"))) == 4


def test_only_the_newest_checkpoints_are_kept_with_every_hash(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite", retention=Retention(keep_checkpoints=2))
    for r in range(5):
        play_round(store, r + 1, r)
        store.prune(r + 1, at=float(r))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["model-000004.npy", "model-000005.npy"]
    latest = store.latest_checkpoint()
    assert latest is not None and latest[0] == 5 and float(latest[1][0]) == 4.0
    kept = store.retained()
    assert kept["checkpoints"] == [4, 5]
    assert kept["rounds_with_bodies"] == 5  # keep_rounds = 0: bodies untouched
    store.close()
    hashes = rows(tmp_path / "state.sqlite", "SELECT round, sha256, pruned_at FROM checkpoints")
    assert [r for r, _, _ in hashes] == [1, 2, 3, 4, 5]  # the hashes stay
    assert [p is not None for _, _, p in hashes] == [True, True, True, False, False]


def test_disk_use_levels_off_over_30_rounds(tmp_path: Path) -> None:
    """With keep_rounds = 2, freed pages are reused: the file stops growing."""
    store = Store(tmp_path / "state.sqlite", retention=Retention(keep_rounds=2, keep_checkpoints=2))
    sizes = []
    for r in range(30):
        play_round(store, r + 1, r)
        store.prune(r + 1, at=float(r))
        sizes.append(state_bytes(store))
    written = 30 * 3 * SLICED
    assert sizes[-1] < written / 5, (sizes[-1], written)
    assert max(sizes[10:]) <= 1.15 * sizes[9], sizes  # bounded after the first rounds
    assert len(list((tmp_path / "checkpoints").glob("*.npy"))) == 2
    kept = store.retained()
    assert kept["rounds_with_bodies"] == 2 and kept["oldest_round_with_bodies"] == 28
    assert kept["bytes_pruned"] == 28 * 3 * (200 + 3 + SLICED)
    assert kept["database_bytes"] == sizes[-1]


def test_retention_rejects_negative_counts() -> None:
    with pytest.raises(ParameterError, match="keep_rounds"):
        Retention(keep_rounds=-1)


def test_a_database_from_before_retention_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE attempts (epoch INTEGER PRIMARY KEY, round INTEGER NOT NULL, "
        "config BLOB NOT NULL, status TEXT NOT NULL, started REAL NOT NULL);"
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, epoch INTEGER NOT NULL, "
        "kind TEXT NOT NULL, client INTEGER, digest BLOB, body BLOB, note TEXT, at REAL NOT NULL);"
        "CREATE TABLE checkpoints (round INTEGER PRIMARY KEY, path TEXT NOT NULL, "
        "sha256 TEXT NOT NULL);"
        "INSERT INTO attempts VALUES (1, 0, x'00', 'completed', 0.0);"
        "INSERT INTO events (epoch, kind, client, digest, body, at) "
        "VALUES (1, 'message', 1, NULL, NULL, 0.0);"
    )
    db.commit()
    db.close()
    store = Store(path, retention=Retention(keep_rounds=1))
    assert [e.nonce for e in store.events(1)] == [None]
    play_round(store, 2, 1)
    play_round(store, 3, 2)
    assert store.prune(3, at=1.0).attempts == 2


CHILD = """
import sys
from pathlib import Path
from aggregator.store import Retention, Store
store = Store(Path(sys.argv[1]), retention=Retention(keep_rounds=1, keep_checkpoints=1))
store.prune(4, at=7.0)
print("prune finished")
"""


def prune_in_child(path: Path, fault: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        env=child_env(fault),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("fault", ["mid_prune", "after_prune_commit"])
def test_kill_9_during_prune_leaves_a_state_the_next_prune_finishes(
    tmp_path: Path, fault: str
) -> None:
    path = tmp_path / "state.sqlite"
    store = Store(path)
    for r in range(4):
        play_round(store, r + 1, r)
    play_round(store, 5, 4, done=False)  # a running attempt, as after a crash mid-round
    store.close()

    child = prune_in_child(path, fault)
    assert child.returncode == -9, child.stderr  # killed at the fault point
    checkpoints = tmp_path / "checkpoints"
    marked = rows(path, "SELECT COUNT(*) FROM attempts WHERE pruned_at IS NOT NULL")[0][0]
    if fault == "mid_prune":  # killed inside the transaction: nothing happened
        assert marked == 0 and len(list(checkpoints.glob("*.npy"))) == 4
    else:  # committed, files not yet deleted: the marks say what to delete
        assert marked == 3 and len(list(checkpoints.glob("*.npy"))) == 4

    # Restart: recovery finds what it needs, and the next prune finishes the job.
    store = Store(path, retention=Retention(keep_rounds=1, keep_checkpoints=1))
    latest = store.latest_checkpoint()
    assert latest is not None and latest[0] == 4
    assert [e.kind for e in store.events(5)] == ["message"] * 6 + ["advance"]  # replayable
    store.prune(4, at=8.0)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["model-000004.npy"]
    for epoch in (1, 2, 3):
        with pytest.raises(StoreError, match="pruned"):
            list(store.events(epoch))
    assert list(store.events(4)) and list(store.events(5))
    assert prune_in_child(path, "").stdout.strip() == "prune finished"
