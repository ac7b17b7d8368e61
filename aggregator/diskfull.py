"""A full disk is a clear, retryable condition, not a traceback per request (issue 15).

Uploads are spooled to ``state_dir/spool`` and every accepted message is
written to ``state.sqlite``; when the file system is full either write fails
(``OSError`` ENOSPC / EDQUOT, or SQLite's SQLITE_FULL). The servicer answers
RESOURCE_EXHAUSTED, which daemons retry with backoff, so nothing is lost
while an operator frees space; this tracker counts the refusals
(``secagg_disk_full_total``), shows the latest in ``/status`` and logs one
warning per ``LOG_EVERY_S`` however many requests meet the full disk.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
from typing import Any

from prometheus_client import Counter

from aggregator.operator import Metrics

log = logging.getLogger("secagg.aggregator")
LOG_EVERY_S = 30.0
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """True for the errors a full file system (or quota) raises."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or "database or disk is full" in str(exc)
    )


class DiskFull:
    """Counts disk-full refusals; thread-safe."""

    def __init__(self, metrics: Metrics) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.last_at: float | None = None
        self._logged = -LOG_EVERY_S
        self._counter = Counter(
            "secagg_disk_full",
            "Requests refused (RESOURCE_EXHAUSTED) because the state folder's disk was full",
            registry=metrics.registry,
        )

    def record(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self.last_at = time.time()
            self._counter.inc()
            if now - self._logged < LOG_EVERY_S:
                return
            self._logged = now
            count = self.count
        log.warning(
            "disk full: %s; requests get RESOURCE_EXHAUSTED until space returns (%d so far)",
            exc,
            count,
        )

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"disk_full_refusals": self.count, "last_disk_full_at": self.last_at}
