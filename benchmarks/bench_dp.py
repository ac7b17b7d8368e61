"""Distributed DP on the client: the exact discrete Gaussian sampler and a whole privatize.

Samples per second = 100,000 / the mean time of ``test_discrete_gaussian``.
``test_privatize`` is one small-cnn update (159,008 parameters, the
``secagg experiment`` default backbone): clip, conditional rounding, noise.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from secagg.dp.encode import privatize
from secagg.dp.plan import plan_ddg
from secagg.dp.sampler import discrete_gaussian
from secagg.rng import DeterministicRandomSource

SAMPLES = 100_000
DIM = 159_008


@pytest.mark.benchmark(group="dp-sampler")
@pytest.mark.parametrize("sigma2", [Fraction(1, 4), Fraction(400), Fraction(10**6)])
def test_discrete_gaussian(
    benchmark: BenchmarkFixture, rng: DeterministicRandomSource, sigma2: Fraction
) -> None:
    out = benchmark(discrete_gaussian, rng, sigma2, SAMPLES)
    assert out.size == SAMPLES


@pytest.mark.benchmark(group="dp-privatize")
def test_privatize(benchmark: BenchmarkFixture, rng: DeterministicRandomSource) -> None:
    plan = plan_ddg(dim=DIM, l2_clip=1.0, noise_multiplier=1.0, min_honest=4)
    update = np.frombuffer(rng.random_bytes(8 * DIM), dtype="<u8") / 2.0**64 - 0.5
    levels = benchmark(privatize, update, plan, rng)
    assert int(levels.max()) < plan.levels
