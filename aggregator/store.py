"""Durable round state in SQLite (WAL): an append-only event log per round attempt.

Every accepted client message is committed, with its digest, before the
client gets its acknowledgement; exclusions and phase advances are logged
too. Replaying an attempt's events in order through a fresh ServerMachine
rebuilds exactly the state the crashed process had acknowledged (the machine
is deterministic), so ``kill -9`` at any point loses nothing acknowledged and
counts nothing twice. Global-model checkpoints are written atomically
(temp file, fsync, rename, fsync of the folder) and their SHA-256 recorded.

Retention (:meth:`Store.prune`, after each completed round's commit): the
bodies of attempts more than ``keep_rounds`` completed rounds old are deleted
(their event rows, digests and request nonces stay: the audit trail), and
only the newest ``keep_checkpoints`` model files are kept (every hash stays).
Crash recovery needs neither: it replays only the running attempt and loads
only the newest checkpoint, which pruning never touches. One transaction
marks and deletes; checkpoint files are unlinked after it commits, from what
it recorded, so a crash at any point leaves a state the next prune finishes.
Freed database pages go on SQLite's free list and are reused by later
rounds, so the file levels off at about ``keep_rounds + 1`` rounds of bodies
instead of shrinking (no VACUUM: it would rewrite the whole file every round),
and they are not zeroed (``secure_delete=FAST``) until a later round reuses them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from aggregator.faults import fault_point
from secagg.errors import ParameterError, SecAggError

log = logging.getLogger("secagg.aggregator")
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
    started REAL NOT NULL,
    pruned_at REAL,                  -- when its message bodies were deleted (retention)
    pruned_bytes INTEGER             -- how many bytes of bodies that was
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch INTEGER NOT NULL REFERENCES attempts(epoch),
    kind TEXT NOT NULL,              -- message | exclude | advance | abort
    client INTEGER,
    digest BLOB,
    body BLOB,
    note TEXT,
    at REAL NOT NULL,
    nonce BLOB                       -- the request's signed nonce (replay refusal after restart)
);
CREATE INDEX IF NOT EXISTS events_epoch ON events(epoch);
CREATE TABLE IF NOT EXISTS event_parts (  -- bodies logged in slices (Store.log_stream)
    seq INTEGER NOT NULL REFERENCES events(seq),
    part INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (seq, part)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    round INTEGER PRIMARY KEY,       -- the model after this many completed rounds
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    pruned_at REAL                   -- when its file was deleted (retention); the hash stays
);
"""
#: Columns added since the first schema: (table, column, type), added to older databases.
ADDED_COLUMNS = (
    ("attempts", "pruned_at", "REAL"),
    ("attempts", "pruned_bytes", "INTEGER"),
    ("events", "nonce", "BLOB"),
    ("checkpoints", "pruned_at", "REAL"),
)


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
    nonce: bytes | None = None


@dataclass(frozen=True)
class Attempt:
    """A round attempt as stored."""

    epoch: int
    round: int
    config: bytes
    status: str
    started: float


@dataclass(frozen=True)
class Retention:
    """What :meth:`Store.prune` keeps; 0 keeps everything of that kind."""

    keep_rounds: int = 0  # message bodies of the last K completed rounds (and the running one)
    keep_checkpoints: int = 0  # the newest C checkpoint files

    def __post_init__(self) -> None:
        if self.keep_rounds < 0 or self.keep_checkpoints < 0:
            raise ParameterError("keep_rounds and keep_checkpoints must be ≥ 0 (0 keeps all)")


@dataclass(frozen=True)
class Pruned:
    """What one :meth:`Store.prune` deleted."""

    attempts: int
    body_bytes: int
    checkpoints: int


class Store:
    """SQLite-backed state; one connection guarded by a lock (writes are serialised anyway)."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = "NORMAL",
        retention: Retention | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.retention = retention or Retention()
        self._swept = False  # prune() has removed every file marked pruned since start
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Some SQLite builds zero every deleted page (SECURE_DELETE): a pruned round would
        # then write its whole size again (measured: 330 ms and 64 MB of WAL for 64 MB of
        # bodies, against 20 ms). Freed pages are reused by later rounds' bodies instead.
        self._db.execute("PRAGMA secure_delete=FAST")
        self._db.executescript(SCHEMA)
        self._migrate()
        self.checkpoint_dir = path.parent / "checkpoints"
        self.checkpoint_dir.mkdir(exist_ok=True)

    def _migrate(self) -> None:
        """Add the columns a database made by an older version lacks (all nullable)."""
        with self._db:
            for table, column, kind in ADDED_COLUMNS:
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

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
        nonce: bytes | None = None,
    ) -> None:
        """Append one event and commit it (``nonce``: the signed request's, kept for replay)."""
        digest = hashlib.sha256(body).digest() if body is not None else None
        fault_point("before_commit")
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO events (epoch, kind, client, digest, body, note, at, nonce) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (epoch, kind, client, digest, body, note, at, nonce),
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
        nonce: bytes | None = None,
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
                    "INSERT INTO events (epoch, kind, client, digest, body, note, at, nonce) "
                    "VALUES (?, ?, ?, NULL, NULL, NULL, ?, ?)",
                    (epoch, kind, client, at, nonce),
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
        """The attempt's events in commit order, digests verified.

        Raises StoreError for an attempt whose bodies retention deleted.
        """
        with self._lock:
            pruned = self._db.execute(
                "SELECT pruned_at FROM attempts WHERE epoch = ? AND pruned_at IS NOT NULL",
                (epoch,),
            ).fetchone()
            rows = self._db.execute(
                "SELECT seq, kind, client, digest, body, note, at, nonce FROM events "
                "WHERE epoch = ? ORDER BY seq",
                (epoch,),
            ).fetchall()
        if pruned is not None:
            raise StoreError(f"the message bodies of epoch {epoch} were pruned (retention)")
        for seq, kind, client, digest, body, note, at, nonce in rows:
            if body is None and digest is not None:  # logged in slices
                body = self._parts(seq)
            if body is not None and hashlib.sha256(body).digest() != digest:
                raise StoreError(f"event of epoch {epoch} fails its digest")
            yield Event(kind, client, body, note, at, nonce)

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

    # ------------------------------------------------------------------ retention

    def prune(self, rounds_done: int, *, at: float) -> Pruned:
        """Apply :attr:`retention` now that ``rounds_done`` rounds are committed.

        Call only after a round's commit (or at start, to finish a prune a
        crash interrupted). Deletes the bodies of finished attempts of rounds
        before ``rounds_done - keep_rounds`` and the checkpoint files beyond the
        newest ``keep_checkpoints``; never the running attempt's bodies, never
        the newest checkpoint. Idempotent.
        """
        keep = self.retention
        with self._lock:
            epochs: list[int] = []
            if keep.keep_rounds:
                epochs = [
                    int(e)
                    for (e,) in self._db.execute(
                        "SELECT epoch FROM attempts WHERE round < ? AND status != 'running' "
                        "AND pruned_at IS NULL ORDER BY epoch",
                        (rounds_done - keep.keep_rounds,),
                    )
                ]
            rounds: list[int] = []
            if keep.keep_checkpoints:
                rounds = [
                    int(r)
                    for (r,) in self._db.execute(
                        "SELECT round FROM checkpoints WHERE round NOT IN "
                        "(SELECT round FROM checkpoints ORDER BY round DESC LIMIT ?) "
                        "AND pruned_at IS NULL",
                        (keep.keep_checkpoints,),
                    )
                ]
            freed = 0
            if epochs or rounds:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for epoch in epochs:
                        freed += self._drop_bodies(epoch, at)
                    self._db.executemany(
                        "UPDATE checkpoints SET pruned_at = ? WHERE round = ?",
                        [(at, r) for r in rounds],
                    )
                    fault_point("mid_prune")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                fault_point("after_prune_commit")
            # Files of the checkpoints just marked; on the first call, of all marked ones
            # (a prune a crash cut short after its commit left them behind).
            names = [
                str(n)
                for (r, n) in self._db.execute(
                    "SELECT round, path FROM checkpoints WHERE pruned_at IS NOT NULL"
                )
                if not self._swept or r in rounds
            ]
            self._swept = True
            if epochs:  # hand the freed pages back to the main file and empty the WAL
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for name in names:
            try:
                (self.checkpoint_dir / name).unlink(missing_ok=True)
            except OSError as exc:  # retried at the next start; never fatal for the round
                log.warning("cannot delete pruned checkpoint %s: %s", name, exc)
        if epochs or rounds:
            log.info(
                "retention: pruned the bodies of %d attempts (%d bytes) and %d checkpoints",
                len(epochs),
                freed,
                len(rounds),
            )
        return Pruned(len(epochs), freed, len(rounds))

    def _drop_bodies(self, epoch: int, at: float) -> int:
        """Delete one attempt's bodies inside the caller's transaction; the bytes freed."""
        inline = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM events WHERE epoch = ?", (epoch,)
        ).fetchone()[0]
        parts = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM event_parts "
            "WHERE seq IN (SELECT seq FROM events WHERE epoch = ?)",
            (epoch,),
        ).fetchone()[0]
        self._db.execute(
            "DELETE FROM event_parts WHERE seq IN (SELECT seq FROM events WHERE epoch = ?)",
            (epoch,),
        )
        self._db.execute(
            "UPDATE events SET body = NULL WHERE epoch = ? AND body IS NOT NULL", (epoch,)
        )
        freed = int(inline) + int(parts)
        self._db.execute(
            "UPDATE attempts SET pruned_at = ?, pruned_bytes = ? WHERE epoch = ?",
            (at, freed, epoch),
        )
        return freed

    def retained(self) -> dict[str, Any]:
        """What the state holds now, for `secagg status` and the metrics."""
        with self._lock:
            kept = self._db.execute(
                "SELECT COUNT(DISTINCT round), MIN(round) FROM attempts WHERE pruned_at IS NULL"
            ).fetchone()
            pruned = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(pruned_bytes), 0) FROM attempts "
                "WHERE pruned_at IS NOT NULL"
            ).fetchone()
            checkpoints = [
                int(r)
                for (r,) in self._db.execute(
                    "SELECT round FROM checkpoints WHERE pruned_at IS NULL ORDER BY round"
                )
            ]
        files = [self.path, self.path.with_name(self.path.name + "-wal")]
        return {
            "keep_rounds": self.retention.keep_rounds,
            "keep_checkpoints": self.retention.keep_checkpoints,
            "rounds_with_bodies": int(kept[0]),
            "oldest_round_with_bodies": kept[1],
            "attempts_pruned": int(pruned[0]),
            "bytes_pruned": int(pruned[1]),
            "checkpoints": checkpoints,
            "database_bytes": sum(f.stat().st_size for f in files if f.exists()),
            "checkpoint_bytes": sum(
                f.stat().st_size for f in self.checkpoint_dir.glob("model-*.npy")
            ),
        }
