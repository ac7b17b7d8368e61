"""Per-identity admission (aggregator/ratelimit.py) with a fake clock."""

from __future__ import annotations

import pytest

from aggregator.ratelimit import Admission, Limits, RateLimited, TokenBucket
from secagg.errors import ParameterError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admitted(admission: Admission, identity: int) -> bool:
    """Take and release one admission; False when refused."""
    try:
        with admission.admit(identity):
            return True
    except RateLimited:
        return False


def test_bucket_allows_the_burst_then_the_rate() -> None:
    clock = FakeClock()
    admission = Admission(Limits(rate=2.0, burst=3, max_inflight=0), clock=clock)
    assert [admitted(admission, 1) for _ in range(5)] == [True, True, True, False, False]
    clock.now += 0.5  # one token back at 2 per second
    assert [admitted(admission, 1) for _ in range(2)] == [True, False]
    clock.now += 1000  # refills to the burst, never beyond
    assert sum(admitted(admission, 1) for _ in range(10)) == 3
    assert admission.refused == {1: 2 + 1 + 7}


def test_refused_calls_take_no_token() -> None:
    clock = FakeClock()
    admission = Admission(Limits(rate=1.0, burst=1, max_inflight=0), clock=clock)
    assert admitted(admission, 1)
    for _ in range(50):  # hammering while empty does not push the refill further away
        assert not admitted(admission, 1)
    clock.now += 1.0
    assert admitted(admission, 1)


def test_identities_have_their_own_buckets() -> None:
    clock = FakeClock()
    admission = Admission(Limits(rate=1.0, burst=2, max_inflight=0), clock=clock)
    assert [admitted(admission, 3) for _ in range(4)] == [True, True, False, False]
    assert [admitted(admission, 1) for _ in range(2)] == [True, True]
    assert admission.refused == {3: 2}


def test_inflight_cap_counts_open_calls() -> None:
    admission = Admission(Limits(rate=0, burst=0, max_inflight=2), clock=FakeClock())
    with admission.admit(7), admission.admit(7):
        with pytest.raises(RateLimited, match="2 calls in flight"):
            with admission.admit(7):
                pass
        assert admitted(admission, 8)  # another identity is not affected
    assert admitted(admission, 7)  # released on exit


def test_inflight_slot_is_released_when_the_call_raises() -> None:
    admission = Admission(Limits(rate=0, burst=0, max_inflight=1), clock=FakeClock())
    with pytest.raises(ValueError, match="boom"), admission.admit(1):
        raise ValueError("boom")
    assert admitted(admission, 1)


def test_rate_limited_maps_to_resource_exhausted() -> None:
    assert RateLimited.status == "RESOURCE_EXHAUSTED"


def test_zero_turns_limits_off() -> None:
    admission = Admission(Limits(rate=0, burst=0, max_inflight=0), clock=FakeClock())
    assert all(admitted(admission, 1) for _ in range(10_000))


def test_clock_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0, tokens=0.0, updated=10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(5.5)  # measured from 5.0 now: half a token
    assert bucket.take(6.0)


@pytest.mark.parametrize(
    ("rate", "burst", "inflight"), [(-1.0, 1, 1), (1.0, -1, 1), (1.0, 1, -1), (1.0, 0, 1)]
)
def test_bad_limits_are_refused(rate: float, burst: int, inflight: int) -> None:
    with pytest.raises(ParameterError):
        Limits(rate=rate, burst=burst, max_inflight=inflight)
