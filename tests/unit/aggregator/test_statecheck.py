"""A state folder whose database lost committed state is refused at start (issue 15, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregator.statecheck import check_after_recovery, check_before_open, completed_rounds
from aggregator.store import Store, StoreError


def journal(folder: Path, *records: tuple[int, bool], tail: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"round": r, "completed": done}) for r, done in records]
    (folder / "rounds.jsonl").write_text("\n".join(lines) + "\n" + tail)


def test_a_fresh_folder_passes(tmp_path: Path) -> None:
    check_before_open(tmp_path / "new")
    check_after_recovery(tmp_path / "new", 0)


def test_completed_rounds_counts_the_highest_completed_one(tmp_path: Path) -> None:
    journal(tmp_path, (0, True), (1, False), (1, True), (2, False), tail='{"round": 3, "comp')
    assert completed_rounds(tmp_path) == 2  # a last line a crash cut short is ignored


def test_a_missing_or_empty_database_with_history_is_refused(tmp_path: Path) -> None:
    journal(tmp_path, (0, True))
    with pytest.raises(StoreError, match=r"state\.sqlite is missing .* 1 completed rounds"):
        check_before_open(tmp_path)
    (tmp_path / "state.sqlite").write_bytes(b"")
    with pytest.raises(StoreError, match="is empty"):
        check_before_open(tmp_path)


def test_checkpoints_without_a_database_are_refused(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir(parents=True)
    (tmp_path / "checkpoints" / "model-00001.npy").write_bytes(b"x")
    with pytest.raises(StoreError, match="1 models"):
        check_before_open(tmp_path)


def test_a_truncated_database_is_one_clear_error(tmp_path: Path) -> None:
    Store(tmp_path / "state.sqlite").close()
    data = (tmp_path / "state.sqlite").read_bytes()
    (tmp_path / "state.sqlite").write_bytes(b"garbage!" * 16 + data[200:300])
    with pytest.raises(StoreError, match="unreadable"):
        check_before_open(tmp_path)


def test_a_database_behind_the_journal_is_refused(tmp_path: Path) -> None:
    journal(tmp_path, (0, True), (1, True))
    check_after_recovery(tmp_path, 2)
    with pytest.raises(StoreError, match=r"recovers to round 1 but rounds\.jsonl records 2"):
        check_after_recovery(tmp_path, 1)


def test_a_corrupt_journal_line_is_refused(tmp_path: Path) -> None:
    journal(tmp_path, (0, True), tail="not json\n" + json.dumps({"round": 1}) + "\n")
    with pytest.raises(StoreError, match="line 2 is not JSON"):
        completed_rounds(tmp_path)
