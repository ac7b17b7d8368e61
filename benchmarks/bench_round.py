"""One in-memory SecAgg round (semi-honest and active), all parties, small and medium sizes."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from protocol.build import make_config
from protocol.simulation import simulate


@pytest.mark.benchmark(group="round-in-memory")
@pytest.mark.parametrize("profile", ["semi-honest", "active"])
@pytest.mark.parametrize(("clients", "dim"), [(10, 10_000), (20, 100_000)])
def test_round(benchmark: BenchmarkFixture, profile: str, clients: int, dim: int) -> None:
    config = make_config(clients=clients, dim=dim, profile=profile)  # type: ignore[arg-type]
    report = benchmark.pedantic(
        simulate, args=(config,), kwargs={"drops": {"masked": 1}, "seed": 1}, rounds=3, iterations=1
    )
    assert report.completed and report.exact
