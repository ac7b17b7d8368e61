"""Refuse a state folder whose database does not match what it has published (issue 15).

``state.sqlite`` is the source of truth for recovery, and ``rounds.jsonl``
and ``checkpoints/`` are written only after a round's commit to it. So a
folder whose database is missing or empty while the others record completed
rounds, or whose database recovers to an earlier round than ``rounds.jsonl``
records as completed (a deleted write-ahead log after kill -9, a restored
old copy), has lost committed state. Starting anyway used to restart
training silently at round 0 and overwrite checkpoints; now the aggregator
refuses at start with one line saying what is missing and what to do.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from aggregator.store import StoreError

DATABASE = "state.sqlite"
JOURNAL = "rounds.jsonl"
ADVICE = "restore it from a backup, or move the folder away to start afresh"


def completed_rounds(folder: Path) -> int:
    """Rounds ``rounds.jsonl`` records as completed: the highest completed round + 1."""
    path = folder / JOURNAL
    if not path.exists():
        return 0
    done = 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                continue  # a last line a crash cut short: the round was committed, not published
            raise StoreError(f"{path} line {number} is not JSON; {ADVICE}") from None
        if isinstance(record, dict) and record.get("completed"):
            done = max(done, int(record.get("round", -1)) + 1)
    return done


def check_before_open(folder: Path) -> None:
    """Before the store is opened: a missing, empty or unreadable database with history."""
    database = folder / DATABASE
    checkpoints = sorted((folder / "checkpoints").glob("model-*.npy"))
    done = completed_rounds(folder)
    missing = not database.exists() or database.stat().st_size == 0
    if missing and (done or checkpoints):
        state = "missing" if not database.exists() else "empty"
        raise StoreError(
            f"{database} is {state} but {JOURNAL} records {done} completed rounds and "
            f"checkpoints/ holds {len(checkpoints)} models: refusing to restart training at "
            f"round 0; {ADVICE}"
        )
    if not missing:
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                db.execute("PRAGMA schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{database} is unreadable ({exc}); {ADVICE}") from None


def check_after_recovery(folder: Path, recovered_round: int) -> None:
    """After recovery: the database must know every round ``rounds.jsonl`` published."""
    done = completed_rounds(folder)
    if recovered_round < done:
        raise StoreError(
            f"{folder / DATABASE} recovers to round {recovered_round} but {JOURNAL} records "
            f"{done} completed rounds: committed state is lost (a deleted write-ahead log, an "
            f"old copy?); refusing to redo and overwrite those rounds; {ADVICE}"
        )
