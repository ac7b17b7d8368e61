"""Distributed DP over the service: daemons add discrete Gaussian noise before masking.

Real aggregator and daemon processes. Four daemons share the aggregator's DP
settings; a fifth is configured with less noise, finds that the round's
quantiser does not carry its own plan, and refuses every round, which then
completes without it. Each honest daemon's ledger charges the survivors named
in the unmasking request, durably in its state_dir, so ε grows round by round.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients.dp import LEDGER_FILE, ClientDp
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

DIM = 300


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def client_config(path: Path, client: int, noise: float) -> Path:
    config = path / f"client-{client}.toml"
    config.write_text(
        "[client]\n"
        "insecure = true\n"
        f"dp_noise_multiplier = {noise}\n"
        "dp_clip = 1.0\n"
        f'metrics_file = "metrics-{client}.jsonl"\n'
    )
    return config


def test_dp_rounds_complete_charge_epsilon_and_refuse_a_mismatched_plan(
    cluster: Cluster,
) -> None:
    cluster.start_aggregator(
        {
            "listen": "127.0.0.1:0",
            "state_dir": "state",
            "insecure": True,
            "profile": "semi-honest",
            "dim": DIM,
            "rounds": 2,
            "dp_noise_multiplier": 1.0,
            "dp_clip": 1.0,
            "phase_timeout_s": 8.0,
            "start_timeout_s": 30.0,
            "poll_wait_s": 1.0,
        },
        extra=["--clients", "5"],
    )
    for c in (1, 2, 3, 4, 5):
        noise = 1.0 if c < 5 else 0.5
        # n_C = 1: what the aggregator's DP plan assumes for 5 clients.
        config = str(client_config(cluster.workdir, c, noise))
        cluster.start_client(c, ["--config", config, "--colluders", "1"])
    assert cluster.wait(timeout=180) == 0
    rounds = [r for r in cluster.rounds() if r["completed"]]
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(r["survivors"] == [1, 2, 3, 4] for r in rounds)
    assert all(r["weight_sum"] == 4 for r in rounds)  # every DP contribution weighs 1
    log = (cluster.workdir / "client-5.log").read_text()
    assert "does not match this client's DP plan" in log
    for c in (1, 2, 3, 4):
        lines = (cluster.workdir / f"metrics-{c}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["round"] for r in rows] == [0, 1]
        assert all(r["dp_survivors"] == 4 for r in rows)
        first, second = rows
        assert first["dp_epsilon_round"] > 0
        assert first["dp_epsilon"] == pytest.approx(first["dp_epsilon_round"])
        assert second["dp_epsilon"] > first["dp_epsilon"]
        # Charged durably in the client's state_dir: what a restarted daemon reads back.
        state = cluster.workdir / f"client-{c}.state" / LEDGER_FILE
        assert ClientDp(1.0, 1.0, path=state).epsilon == pytest.approx(second["dp_epsilon"])
    checkpoints = sorted((cluster.workdir / "state" / "checkpoints").glob("model-*.npy"))
    model = np.load(checkpoints[-1])
    assert model.shape == (DIM,) and np.all(np.isfinite(model)) and np.any(model != 0)
