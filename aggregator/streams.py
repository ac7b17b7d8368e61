"""Idle and total deadlines for client streams, and caps on uploads open at once.

grpcio's sync server hands a streaming handler a blocking request iterator
with no timeout: a client that sends a signed first chunk and then nothing
holds a worker thread until its own deadline, which it chooses (issue 15:
8 identities x 8 such uploads held all 64 workers; no honest round ran).

:class:`StreamWatchdog` keeps one thread for all streams. Each watched call
records its progress (:meth:`Progress.touch` on every chunk); a call with
no progress for ``idle_s``, or open longer than ``total_s``, is cancelled
(``context.cancel()``), which wakes the worker blocked in ``next()`` with an
RpcError the servicer turns into DEADLINE_EXCEEDED. :class:`UploadSlots`
caps uploads open at once, in total and per identity, so that stalled
uploads can never hold more than a bounded share of the workers even
between two watchdog sweeps. Both refuse or cancel; neither ever blocks.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from aggregator.ratelimit import RateLimited
from protocol.errors import ProtocolError

log = logging.getLogger("secagg.aggregator")
Clock = Callable[[], float]


class StreamStalled(ProtocolError):
    """The client sent nothing for the idle timeout, or the stream ran past its total."""

    status = "DEADLINE_EXCEEDED"


class StreamCancelled(ProtocolError):
    """The client cancelled its own stream (not an error of ours; logged at debug level)."""

    status = "CANCELLED"


@dataclass
class Progress:
    """One watched stream: when it started, when it last made progress, why it was cut."""

    context: grpc.ServicerContext
    started: float
    last: float
    clock: Clock
    reason: str = ""

    def touch(self) -> None:
        self.last = self.clock()

    def next(self, chunks: Iterator[object]) -> object | None:
        """The stream's next message (None at its end); a cut or cancelled stream raises."""
        try:
            item = next(chunks, None)
        except grpc.RpcError:  # cancelled: by the watchdog (reason set) or by the client
            raise self.error() from None
        self.touch()
        return item

    def error(self) -> ProtocolError:
        if self.reason:
            return StreamStalled(self.reason)
        return StreamCancelled("the client cancelled the stream")


class StreamWatchdog:
    """Cancels watched streams idle for ``idle_s`` or open for ``total_s``; 0 turns one off."""

    def __init__(self, idle_s: float, total_s: float, *, clock: Clock = time.monotonic) -> None:
        self.idle_s = idle_s
        self.total_s = total_s
        self._clock = clock
        self._lock = threading.Lock()
        self._watched: dict[int, Progress] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Streams cut since start, by reason ("idle", "total"): metrics and tests.
        self.cut: dict[str, int] = {"idle": 0, "total": 0}

    @contextmanager
    def watch(self, context: grpc.ServicerContext) -> Iterator[Progress]:
        now = self._clock()
        progress = Progress(context, now, now, self._clock)
        key = next(self._ids)
        with self._lock:
            self._watched[key] = progress
            if self._thread is None and (self.idle_s or self.total_s):
                self._thread = threading.Thread(
                    target=self._run, name="stream-watchdog", daemon=True
                )
                self._thread.start()
        try:
            yield progress
        finally:
            with self._lock:
                self._watched.pop(key, None)

    def sweep(self) -> int:
        """Cancel every stream past a limit now; how many were cut (the thread calls this)."""
        now = self._clock()
        cut: list[Progress] = []
        with self._lock:
            for key, p in list(self._watched.items()):
                if self.idle_s and now - p.last > self.idle_s:
                    p.reason, kind = f"no data for {self.idle_s:g} s", "idle"
                elif self.total_s and now - p.started > self.total_s:
                    p.reason, kind = f"stream open longer than {self.total_s:g} s", "total"
                else:
                    continue
                self.cut[kind] += 1
                del self._watched[key]
                cut.append(p)
        for p in cut:  # outside the lock: cancel() takes gRPC's own locks
            p.context.cancel()
        return len(cut)

    def _run(self) -> None:
        period = min(x for x in (self.idle_s, self.total_s, 4.0) if x) / 4
        while not self._stop.wait(period):
            try:
                self.sweep()
            except Exception:  # the watchdog must outlive anything one context does
                log.exception("stream watchdog error")

    def stop(self) -> None:
        self._stop.set()


class UploadSlots:
    """At most ``total`` uploads open at once, ``per_client`` for one identity; 0 = no cap."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._lock = threading.Lock()
        self._open = 0
        self._mine: dict[int, int] = {}
        self.refused = 0

    @contextmanager
    def any(self) -> Iterator[None]:
        """One of the ``total`` slots, taken before the first chunk is read."""
        with self._lock:
            if self.total and self._open >= self.total:
                self.refused += 1
                raise RateLimited(f"{self._open} uploads open (limit {self.total}); retry later")
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1

    @contextmanager
    def client(self, identity: int) -> Iterator[None]:
        """One of ``identity``'s ``per_client`` slots, once the first chunk names it."""
        with self._lock:
            mine = self._mine.get(identity, 0)
            if self.per_client and mine >= self.per_client:
                self.refused += 1
                raise RateLimited(
                    f"client {identity} has {mine} uploads open (limit {self.per_client})"
                )
            self._mine[identity] = mine + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._mine[identity] - 1
                if left:
                    self._mine[identity] = left
                else:
                    del self._mine[identity]
