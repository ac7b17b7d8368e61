"""Shared fixtures and Hypothesis profiles for the whole test suite.

Profiles (pick one with ``HYPOTHESIS_PROFILE=<name>``):

- ``ci`` (default): 50 examples per property, no deadline (CI runs on 2 slow
  cores, where timings are noisy). The secagg core runs in well under 30 s.
- ``dev``: 10 examples, for a quick local loop.
- ``nightly``: 1000 examples, for the long job.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import HealthCheck, settings

from secagg.rng import DeterministicRandomSource

settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.register_profile(
    "nightly",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> DeterministicRandomSource:
    """A reproducible random source, seeded by the test's node id."""
    return DeterministicRandomSource(request.node.nodeid)


@pytest.fixture
def session_id() -> bytes:
    """A fixed 32-byte session id."""
    return hashlib.sha256(b"secagg/tests/session").digest()
