"""Retention on a live aggregator: pruning after each round, what status shows, kill -9 around it.

- In process (fast): 4 rounds with 3 daemons, ``keep_rounds = 1``,
  ``keep_checkpoints = 1``: every round exact, only the last round's bodies
  and the newest checkpoint left, the digests of every event still there,
  and `secagg status --json` and ``/metrics`` say so.
- As processes (slow, T36-style): the aggregator is killed with SIGKILL inside
  the prune transaction, after its commit (before the checkpoint files go),
  and in a later round whose replay runs on a pruned log; after a restart
  every round completed exactly once with the exact sum, and the retention
  bound holds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aggregator.server import AggregatorServer
from aggregator.settings import AggregatorSettings
from clients.daemon import Daemon
from clients.training.synthetic import SyntheticTrainer
from clients.transport import Transport
from secagg.cli import main
from tests.integration.harness import Cluster, expected_sha256
from tests.integration.test_robustness import SEMI_HONEST_LAB, Live, _connect

pytestmark = pytest.mark.integration

ROSTER = (1, 2, 3)
DIM = 2000


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return list(db.execute(sql))
    finally:
        db.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    settings = AggregatorSettings(
        listen="127.0.0.1:0",
        insecure=True,
        profile="semi-honest",
        state_dir=str(tmp_path / "state"),
        dim=DIM,
        rounds=4,
        poll_wait_s=0.5,
        max_workers=8,
        operator_listen="127.0.0.1:0",
        keep_rounds=1,
        keep_checkpoints=1,
    )
    made = _connect(AggregatorServer(settings, clients=len(ROSTER)))
    made.server.start()
    yield made
    made.stop()


def run_daemons(live: Live) -> None:
    def run(client: int) -> None:
        transport = Transport(live.channel, client, base_delay=0.2, max_delay=1.0, attempts=6)
        trainer = SyntheticTrainer(client, exact=True)
        Daemon(
            client,
            transport,
            trainer,
            signing_key=None,
            roster={},
            policy=SEMI_HONEST_LAB,
            poll_timeout=2.0,
        ).run()

    threads = [threading.Thread(target=run, args=(c,)) for c in ROSTER]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(t.is_alive() for t in threads)


def test_live_rounds_keep_only_the_last_round_and_status_says_so(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_daemons(live)
    history = list(live.server.coordinator.history)
    assert [r.round for r in history] == [0, 1, 2, 3]
    for record in history:
        assert record.total_sha256 == expected_sha256(list(ROSTER), record.round, DIM)

    state = tmp_path / "state"
    assert sorted(p.name for p in (state / "checkpoints").iterdir()) == ["model-000004.npy"]
    with_bodies = rows(
        state / "state.sqlite",
        "SELECT DISTINCT a.round FROM attempts a JOIN events e USING (epoch) "
        "WHERE e.body IS NOT NULL OR e.seq IN (SELECT seq FROM event_parts)",
    )
    assert with_bodies == [(3,)]
    digests = rows(state / "state.sqlite", "SELECT COUNT(*) FROM events WHERE digest IS NOT NULL")
    assert digests[0][0] == 4 * 4 * len(ROSTER)  # every message of every round: the audit trail

    assert live.server.operator is not None
    address = f"127.0.0.1:{live.server.operator.port}"
    assert main(["status", "--aggregator", address, "--json"]) == 0
    kept = json.loads(capsys.readouterr().out)["retention"]
    assert kept["keep_rounds"] == 1 and kept["keep_checkpoints"] == 1
    assert kept["rounds_with_bodies"] == 1 and kept["oldest_round_with_bodies"] == 3
    assert kept["checkpoints"] == [4] and kept["attempts_pruned"] == 3
    assert kept["bytes_pruned"] > 3 * len(ROSTER) * DIM  # the masked inputs, at least
    assert main(["status", "--aggregator", address]) == 0
    assert "retained: bodies of 1 rounds" in capsys.readouterr().out
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        metrics = reply.read().decode()
    assert "secagg_retained_rounds 1.0" in metrics
    size = next(line for line in metrics.splitlines() if line.startswith("secagg_state_bytes "))
    assert float(size.split()[1]) == kept["database_bytes"] + kept["checkpoint_bytes"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    [
        "mid_prune#1",  # inside the prune transaction after round 1
        "after_prune_commit#2",  # committed, checkpoint files not yet deleted (after round 2)
        # Round 2's checkpoint write: the restart replays round 2's whole attempt on a log
        # whose round 0 is pruned, and finishes it. (Not an ack point: a client whose ack
        # is lost retries after a restart, and when the others closed the phase meanwhile
        # its retry is refused and the attempt aborts at its deadline, 20 s later.)
        "mid_checkpoint_write#3",
    ],
)
def test_kill_9_around_pruning_then_restart_loses_nothing(cluster: Cluster, fault: str) -> None:
    rounds = 4
    config = {
        "listen": "127.0.0.1:0",
        "state_dir": "state",
        "dim": DIM,
        "rounds": rounds,
        "phase_timeout_s": 20.0,
        "start_timeout_s": 30.0,
        "poll_wait_s": 1.0,
        "insecure": True,
        "profile": "semi-honest",
        "keep_rounds": 1,
        "keep_checkpoints": 1,
    }
    cluster.start_aggregator(config, extra=["--clients", "3"], fault=fault)
    for c in ROSTER:
        cluster.start_client(c, ["--insecure", "--exact-levels"])
    assert cluster.aggregator is not None
    assert cluster.aggregator.wait(timeout=60) == -9  # SIGKILL at the fault point
    db = cluster.workdir / "state" / "state.sqlite"
    done = "SELECT COUNT(*) FROM attempts WHERE round = 0 AND status = 'completed'"
    assert rows(db, done) == [(1,)]  # it died after round 0 at least
    cluster.restart_aggregator()
    assert cluster.wait(timeout=120) == 0

    records = [r for r in cluster.rounds() if r["completed"]]
    assert [r["round"] for r in records] == list(range(rounds))  # each exactly once
    for r in records:
        assert r["survivors"] == list(ROSTER)
        assert r["total_sha256"] == expected_sha256(list(ROSTER), int(str(r["round"])), DIM)
    checkpoints = sorted(p.name for p in (cluster.workdir / "state" / "checkpoints").iterdir())
    assert checkpoints == [f"model-{rounds:06d}.npy"]
    kept = rows(db, "SELECT round FROM attempts WHERE pruned_at IS NULL")
    assert {r for (r,) in kept} == {rounds - 1}
    assert rows(
        db,
        "SELECT COUNT(*) FROM event_parts p JOIN events e USING (seq) "
        "JOIN attempts a USING (epoch) WHERE a.pruned_at IS NOT NULL",
    ) == [(0,)]
