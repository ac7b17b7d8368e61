"""Per-identity admission control: a token bucket for the rate, a cap on calls in flight.

X9 (security.md §3): mutual TLS keeps strangers out before any handler runs
and ``maximum_concurrent_rpcs`` caps the server as a whole, but one enrolled
client could still flood the coordinator or hold every worker thread with
long polls. So each identity gets its own bucket of ``burst`` tokens,
refilled at ``rate`` per second, and at most ``max_inflight`` calls at once.
A call takes one token; a refused call takes none. Uploads are also
charged their declared length against a second bucket per identity, in
bytes (``bytes_rate``, ``bytes_burst``), on their first chunk and before
anything is spooled: a call-rate limit alone would let one client push its
``rate`` of maximum-size uploads through the spool every second.

Refusals raise :class:`RateLimited` (RESOURCE_EXHAUSTED, §4.2), which
clients retry with backoff. The servicer admits a call before it touches any
round state, so a refusal never loses or half-applies anything. Identities
are checked against the roster first, so the table never grows beyond it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from protocol.errors import ProtocolError
from secagg.errors import ParameterError

log = logging.getLogger("secagg.aggregator")
Clock = Callable[[], float]
LOG_EVERY_S = 10.0  # one warning per identity per this many seconds, however hard it floods


class RateLimited(ProtocolError):
    """This identity sends too fast or has too many calls open; retry with backoff."""

    status = "RESOURCE_EXHAUSTED"


@dataclass
class TokenBucket:
    """``burst`` tokens at most, refilled continuously at ``rate`` per second."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens if there are as many; refill first from the time elapsed."""
        elapsed = max(0.0, now - self.updated)  # a clock step back refills nothing
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


@dataclass(frozen=True)
class Limits:
    """``rate`` calls per second sustained, ``burst`` at once, ``max_inflight`` open,
    ``bytes_rate`` upload bytes per second with ``bytes_burst`` at once; 0 = off."""

    rate: float
    burst: int
    max_inflight: int
    bytes_rate: float = 0.0
    bytes_burst: int = 0

    def __post_init__(self) -> None:
        if min(self.rate, self.burst, self.max_inflight, self.bytes_rate, self.bytes_burst) < 0:
            raise ParameterError("rate limits must be non-negative (0 turns one off)")
        if self.rate > 0 and self.burst < 1:
            raise ParameterError("rate_limit_burst must be at least 1 when a rate is set")
        if self.bytes_rate > 0 and self.bytes_burst < 1:
            raise ParameterError("the upload byte burst must be at least 1 when a rate is set")


class Admission:
    """Admits or refuses calls per identity; thread-safe."""

    def __init__(self, limits: Limits, *, clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, TokenBucket] = {}
        self._bytes: dict[int, TokenBucket] = {}
        self._inflight: dict[int, int] = {}
        #: Refused calls per identity since start (metrics and tests).
        self.refused: dict[int, int] = {}
        self._logged: dict[int, float] = {}

    @contextmanager
    def admit(self, identity: int) -> Iterator[None]:
        """Hold one admission for ``identity`` while the body runs; raise RateLimited if refused."""
        self._enter(identity)
        try:
            yield
        finally:
            with self._lock:
                self._inflight[identity] -= 1

    def _enter(self, identity: int) -> None:
        limits = self.limits
        with self._lock:
            inflight = self._inflight.get(identity, 0)
            now = self._clock()
            if limits.max_inflight and inflight >= limits.max_inflight:
                self._refuse(
                    identity,
                    now,
                    f"client {identity} has {inflight} calls in flight "
                    f"(limit {limits.max_inflight})",
                )
            if limits.rate:
                bucket = self._buckets.get(identity)
                if bucket is None:
                    bucket = TokenBucket(limits.rate, limits.burst, limits.burst, now)
                    self._buckets[identity] = bucket
                if not bucket.take(now):
                    self._refuse(
                        identity,
                        now,
                        f"client {identity} exceeds {limits.rate:g} calls/s (burst {limits.burst})",
                    )
            self._inflight[identity] = inflight + 1

    def charge_bytes(self, identity: int, size: int) -> None:
        """Take ``size`` upload bytes from ``identity``'s byte bucket; RateLimited if short.

        An upload larger than the whole bucket could never pass: it is
        refused like any other (the servicer's size cap is below the burst).
        """
        limits = self.limits
        if not limits.bytes_rate:
            return
        with self._lock:
            now = self._clock()
            bucket = self._bytes.get(identity)
            if bucket is None:
                bucket = TokenBucket(limits.bytes_rate, limits.bytes_burst, limits.bytes_burst, now)
                self._bytes[identity] = bucket
            if not bucket.take(now, float(size)):
                self._refuse(
                    identity,
                    now,
                    f"client {identity} exceeds {limits.bytes_rate:g} upload bytes/s "
                    f"(burst {limits.bytes_burst})",
                )

    def _refuse(self, identity: int, now: float, reason: str) -> None:
        self.refused[identity] = self.refused.get(identity, 0) + 1
        if now - self._logged.get(identity, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[identity] = now
            log.warning("rate limit: %s (%d refused so far)", reason, self.refused[identity])
        raise RateLimited(reason)
