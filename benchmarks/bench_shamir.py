"""Shamir split (one client's two secrets) and reconstruction (1000 secrets, one holder set)."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from secagg.primitives import shamir
from secagg.rng import DeterministicRandomSource

SIZES = [(100, 67), (1000, 667)]


@pytest.mark.benchmark(group="shamir-split")
@pytest.mark.parametrize(("n", "t"), SIZES)
def test_split_two_secrets(
    benchmark: BenchmarkFixture, rng: DeterministicRandomSource, n: int, t: int
) -> None:
    secrets = [rng.random_bytes(32), rng.random_bytes(32)]
    shares = benchmark(shamir.split, secrets, n=n, t=t, rng=rng)
    assert shares.shape == (n, 2, shamir.LIMBS)


@pytest.mark.benchmark(group="shamir-reconstruct")
@pytest.mark.parametrize(("n", "t"), SIZES)
def test_reconstruct_1000_secrets(
    benchmark: BenchmarkFixture, rng: DeterministicRandomSource, n: int, t: int
) -> None:
    secrets = [rng.random_bytes(32) for _ in range(1000)]
    shares = shamir.split(secrets, n=n, t=t, rng=rng)
    xs = list(range(1, t + 1))
    got = benchmark(shamir.reconstruct, xs, shares[:t], t=t)
    assert got == secrets
