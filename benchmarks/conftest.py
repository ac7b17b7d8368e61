"""Benchmarks for `make bench` (pytest-benchmark); `make test` runs each once as a smoke test."""

from __future__ import annotations

import os

import pytest

from secagg.rng import DeterministicRandomSource


@pytest.fixture
def rng() -> DeterministicRandomSource:
    return DeterministicRandomSource(b"bench")


@pytest.fixture
def seed() -> bytes:
    return os.urandom(32)
