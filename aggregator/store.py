"""Durable round state in SQLite (WAL): an append-only event log per round attempt.

Every accepted client message is committed, with its digest, before the
client gets its acknowledgement; exclusions and phase advances are logged
too. Replaying an attempt's events in order through a fresh ServerMachine
rebuilds exactly the state the crashed process had acknowledged (the machine
is deterministic), so ``kill -9`` at any point loses nothing acknowledged and
counts nothing twice. Global-model checkpoints are written atomically
(temp file, fsync, rename, fsync of the folder) and their SHA-256 recorded.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from protocol.faults import fault_point
from secagg.errors import SecAggError

Synchronous = Literal["NORMAL", "FULL"]
EventKind = Literal["message", "exclude", "advance", "abort"]
STREAM_SLICE = 1 << 20  # bytes copied at a time by log_stream


class Readable(Protocol):
    """A body too large to hold in memory (an upload spooled to disk)."""

    @property
    def length(self) -> int:
        """Bytes in the body."""
        ...

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset``."""
        ...


SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    epoch INTEGER PRIMARY KEY,
    round INTEGER NOT NULL,
    config BLOB NOT NULL,
    status TEXT NOT NULL,            -- running | completed | aborted
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch INTEGER NOT NULL REFERENCES attempts(epoch),
    kind TEXT NOT NULL,              -- message | exclude | advance | abort
    client INTEGER,
    digest BLOB,
    body BLOB,
    note TEXT,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS event_parts (  -- bodies logged in slices (Store.log_stream)
    seq INTEGER NOT NULL REFERENCES events(seq),
    part INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (seq, part)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    round INTEGER PRIMARY KEY,       -- the model after this many completed rounds
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
"""


class StoreError(SecAggError):
    """The durable state is missing, inconsistent or corrupt."""


@dataclass(frozen=True)
class Event:
    """One logged event of an attempt."""

    kind: EventKind
    client: int | None
    body: bytes | None
    note: str | None
    at: float


@dataclass(frozen=True)
class Attempt:
    """A round attempt as stored."""

    epoch: int
    round: int
    config: bytes
    status: str
    started: float


class Store:
    """SQLite-backed state; one connection guarded by a lock (writes are serialised anyway)."""

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self.checkpoint_dir = path.parent / "checkpoints"
        self.checkpoint_dir.mkdir(exist_ok=True)

    def pragma(self, name: str) -> object:
        """A PRAGMA value (tests check durability settings)."""
        with self._lock:
            return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ attempts and events

    def begin_attempt(self, epoch: int, round_: int, config: bytes, at: float) -> None:
        """Record a new round attempt (committed before any client hears of it)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO attempts (epoch, round, config, status, started) "
                "VALUES (?, ?, ?, 'running', ?)",
                (epoch, round_, config, at),
            )

    def log(
        self,
        epoch: int,
        kind: EventKind,
        *,
        at: float,
        client: int | None = None,
        body: bytes | None = None,
        note: str | None = None,
    ) -> None:
        """Append one event and commit it."""
        digest = hashlib.sha256(body).digest() if body is not None else None
        fault_point("before_commit")
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO events (epoch, kind, client, digest, body, note, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (epoch, kind, client, digest, body, note, at),
            )
        fault_point("after_commit_before_ack")

    def log_stream(
        self,
        epoch: int,
        kind: EventKind,
        *,
        at: float,
        client: int,
        header: bytes,
        source: Readable,
    ) -> None:
        """:meth:`log` for a body ``header + source`` copied in slices, never whole in memory.

        The body goes into ``event_parts`` (1 MiB rows) in the same
        transaction as its event, so a crash commits all of it or nothing.
        Rows, not SQLite's incremental blob I/O: CPython 3.11's ``blobopen``
        keeps a reference per call on the connection, which a soak test sees
        as a leak.
        """
        fault_point("before_commit")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                digest = hashlib.sha256(header)
                row = self._db.execute(
                    "INSERT INTO events (epoch, kind, client, digest, body, note, at) "
                    "VALUES (?, ?, ?, NULL, NULL, NULL, ?)",
                    (epoch, kind, client, at),
                ).lastrowid
                self._db.execute(
                    "INSERT INTO event_parts (seq, part, data) VALUES (?, 0, ?)", (row, header)
                )
                for part, offset in enumerate(range(0, source.length, STREAM_SLICE), start=1):
                    piece = source.read(offset, STREAM_SLICE)
                    digest.update(piece)
                    self._db.execute(
                        "INSERT INTO event_parts (seq, part, data) VALUES (?, ?, ?)",
                        (row, part, piece),
                    )
                self._db.execute(
                    "UPDATE events SET digest = ? WHERE seq = ?", (digest.digest(), row)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        fault_point("after_commit_before_ack")

    def finish_attempt(self, epoch: int, status: Literal["completed", "aborted"]) -> None:
        """Mark an attempt finished."""
        with self._lock, self._db:
            self._db.execute("UPDATE attempts SET status = ? WHERE epoch = ?", (status, epoch))

    def running_attempt(self) -> Attempt | None:
        """The attempt that was running when the process stopped, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT epoch, round, config, status, started FROM attempts "
                "WHERE status = 'running' ORDER BY epoch DESC LIMIT 1"
            ).fetchone()
        return Attempt(*row) if row else None

    def last_epoch(self) -> int:
        """The highest epoch ever used (0 if none)."""
        with self._lock:
            row = self._db.execute("SELECT MAX(epoch) FROM attempts").fetchone()
        return int(row[0] or 0)

    def events(self, epoch: int) -> Iterator[Event]:
        """The attempt's events in commit order, digests verified."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, client, digest, body, note, at FROM events "
                "WHERE epoch = ? ORDER BY seq",
                (epoch,),
            ).fetchall()
        for seq, kind, client, digest, body, note, at in rows:
            if body is None and digest is not None:  # logged in slices
                body = self._parts(seq)
            if body is not None and hashlib.sha256(body).digest() != digest:
                raise StoreError(f"event of epoch {epoch} fails its digest")
            yield Event(kind, client, body, note, at)

    def _parts(self, seq: int) -> bytes:
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM event_parts WHERE seq = ? ORDER BY part", (seq,)
            ).fetchall()
        return b"".join(data for (data,) in rows)

    def count_messages(self, epoch: int) -> int:
        """How many client messages the attempt accepted (tests: exactly-once)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM events WHERE epoch = ? AND kind = 'message'", (epoch,)
            ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, rounds_done: int, model: np.ndarray) -> str:
        """Write the model atomically and record its SHA-256; returns the digest."""
        buf = io.BytesIO()
        np.save(buf, model.astype("<f4"), allow_pickle=False)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        final = self.checkpoint_dir / f"model-{rounds_done:06d}.npy"
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        fault_point("mid_checkpoint_write")
        os.replace(tmp, final)
        dir_fd = os.open(self.checkpoint_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO checkpoints (round, path, sha256) VALUES (?, ?, ?)",
                (rounds_done, final.name, digest),
            )
        return digest

    def latest_checkpoint(self) -> tuple[int, np.ndarray] | None:
        """(rounds done, model) of the newest recorded checkpoint, hash verified."""
        for tmp in self.checkpoint_dir.glob("*.tmp"):
            tmp.unlink()  # a write the crash interrupted; the recorded one is intact
        with self._lock:
            row = self._db.execute(
                "SELECT round, path, sha256 FROM checkpoints ORDER BY round DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        rounds_done, name, digest = row
        data = (self.checkpoint_dir / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"checkpoint {name} does not match its recorded SHA-256")
        return int(rounds_done), np.load(io.BytesIO(data), allow_pickle=False)
