"""What counts as a full disk (aggregator/diskfull.py), and that it is logged once."""

from __future__ import annotations

import errno
import logging
import sqlite3

import pytest

from aggregator.diskfull import DiskFull, is_disk_full
from aggregator.operator import Metrics


def test_full_disk_errors_are_recognised_and_others_are_not() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(ValueError("disk is full"))


def test_refusals_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    disk = DiskFull(metrics)
    with caplog.at_level(logging.WARNING, logger="secagg.aggregator"):
        for _ in range(50):
            disk.record(OSError(errno.ENOSPC, "No space left on device"))
    assert disk.status()["disk_full_refusals"] == 50
    assert metrics.registry.get_sample_value("secagg_disk_full_total") == 50
    assert sum("disk full" in r.message for r in caplog.records) == 1
