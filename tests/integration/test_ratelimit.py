"""Per-identity rate limit on a live aggregator (X9; T35's "the abusive client gets
RESOURCE_EXHAUSTED", at unit-test size).

An in-process :class:`AggregatorServer` (insecure, semi-honest, roster 1–3)
with deliberately tight limits: one client that floods is refused while the
others are served, and honest daemons that get throttled still finish their
rounds exactly, because refused calls change nothing and clients retry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from aggregator.server import AggregatorServer
from aggregator.settings import AggregatorSettings
from clients.daemon import Daemon
from clients.training.synthetic import SyntheticTrainer
from clients.transport import Transport
from secagg_pb.v1 import secagg_pb2 as pb
from tests.integration.harness import expected_sha256
from tests.integration.test_robustness import SEMI_HONEST_LAB, Live, _connect, code_of

pytestmark = pytest.mark.integration

DIM = 16
ROSTER = (1, 2, 3)
Code = grpc.StatusCode


@pytest.fixture
def make_live(tmp_path: Path) -> Iterator[Callable[..., Live]]:
    made: list[Live] = []

    def make(**overrides: Any) -> Live:
        options: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "insecure": True,
            "profile": "semi-honest",
            "state_dir": str(tmp_path / "state"),
            "dim": DIM,
            "rounds": 2,
            "poll_wait_s": 0.5,
            "max_workers": 8,
            **overrides,
        }
        live = _connect(AggregatorServer(AggregatorSettings(**options), clients=len(ROSTER)))
        made.append(live)
        live.server.start()
        return live

    yield make
    for live in made:
        live.stop()


def test_flooding_client_is_refused_and_others_are_served(make_live: Callable[..., Live]) -> None:
    live = make_live(rate_limit_per_s=5.0, rate_limit_burst=10, max_inflight_per_client=2)
    model = pb.ModelRequest(client=3, round=0)
    codes = [code_of(lambda: list(live.stub.GetModel(model, timeout=5)))[0] for _ in range(40)]
    assert codes[:10] == [Code.OK] * 10  # the burst
    assert codes.count(Code.RESOURCE_EXHAUSTED) >= 25  # then about 5/s at most
    assert set(codes) == {Code.OK, Code.RESOURCE_EXHAUSTED}
    # Concurrent long polls beyond the in-flight cap: refused at once.
    polls = [live.stub.Poll.future(pb.PollRequest(client=2), timeout=2) for _ in range(6)]
    poll_codes = [code_of(call.result)[0] for call in polls]
    assert poll_codes.count(Code.RESOURCE_EXHAUSTED) >= 4, poll_codes
    # Client 1 is not affected by clients 2 and 3.
    assert code_of(lambda: list(live.stub.GetModel(pb.ModelRequest(client=1), timeout=5)))[0] is (
        Code.OK
    )
    admission = live.server.servicer.admission
    assert admission.refused.get(3, 0) >= 25 and 1 not in admission.refused
    metrics = live.server.coordinator.metrics.exposition().decode()
    assert "secagg_throttled_total" in metrics
    assert "secagg_throttled_total 0.0" not in metrics
    assert live.server.coordinator.machine is None  # nothing started, nothing stored


def test_throttled_honest_daemons_lose_nothing(make_live: Callable[..., Live]) -> None:
    """About 12 calls per round per daemon against 4/s: throttled, retried, exact."""
    live = make_live(rate_limit_per_s=4.0, rate_limit_burst=4, max_inflight_per_client=1)
    stats = {}

    def run(client: int) -> None:
        transport = Transport(live.channel, client, base_delay=0.3, max_delay=2.0, attempts=8)
        daemon = Daemon(
            client,
            transport,
            SyntheticTrainer(client, exact=True),
            signing_key=None,
            roster={},
            policy=SEMI_HONEST_LAB,
            poll_timeout=2.0,
        )
        stats[client] = daemon.run()

    threads = [threading.Thread(target=run, args=(c,)) for c in ROSTER]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert all(not t.is_alive() for t in threads)
    # A daemon still backing off when the next round starts skips the old round's
    # RoundComplete, so the server's records are the measure; no daemon gave up.
    assert all(stats[c].rounds_aborted == [] and 1 in stats[c].rounds_completed for c in ROSTER)
    assert sum(live.server.servicer.admission.refused.values()) > 0  # throttling happened
    history = list(live.server.coordinator.history)
    assert [r.round for r in history] == [0, 1]  # no attempt aborted
    for record in history:
        assert record.survivors == list(ROSTER)
        assert record.total_sha256 == expected_sha256(list(ROSTER), record.round, DIM)
