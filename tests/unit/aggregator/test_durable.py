"""aggregator.durable.replace_file: all-or-nothing replacement."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from aggregator import durable


def test_replaces_the_content_with_the_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    durable.replace_file(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def broken(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(durable.os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        durable.replace_file(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
