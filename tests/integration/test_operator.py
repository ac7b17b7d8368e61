"""The operator endpoint: Prometheus metrics and `secagg status` against a live aggregator."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.server import AggregatorServer
from aggregator.settings import AggregatorSettings
from secagg.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AggregatorServer]:
    settings = AggregatorSettings(
        listen="127.0.0.1:0",
        insecure=True,
        profile="semi-honest",
        state_dir=str(tmp_path / "state"),
        dim=10,
        rounds=1,
        operator_listen="127.0.0.1:0",
    )
    srv = AggregatorServer(settings, clients=3)
    srv.start()
    yield srv
    srv.stop(0)


def test_metrics_are_prometheus_text(server: AggregatorServer) -> None:
    assert server.operator is not None
    url = f"http://127.0.0.1:{server.operator.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = reply.read().decode()
    assert "# TYPE secagg_rounds_total counter" in body
    assert "secagg_round 0.0" in body or "secagg_round " in body
    server.coordinator.metrics.messages.labels("accepted").inc()
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert 'secagg_messages_total{outcome="accepted"} 1.0' in reply.read().decode()


def test_status_command_reads_the_endpoint(
    server: AggregatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server.operator is not None
    address = f"127.0.0.1:{server.operator.port}"
    assert main(["status", "--aggregator", address, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["round"] == 0 and status["rounds"] == 1 and status["finished"] is False
    assert status["profile"] == "semi-honest"
    assert main(["status", "--aggregator", address]) == 0
    assert "round 0/1" in capsys.readouterr().out


def test_unknown_path_is_404(server: AggregatorServer) -> None:
    assert server.operator is not None
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{server.operator.port}/secrets", timeout=5)
    assert err.value.code == 404
