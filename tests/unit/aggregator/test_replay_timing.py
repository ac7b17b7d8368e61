"""A replayed round keeps its timing: wall time runs from the attempt's first start."""

from __future__ import annotations

import time
from pathlib import Path

from aggregator.store import Store
from tests.unit.aggregator.test_method_rounds import coordinator_for, started


def test_a_replayed_round_times_itself_from_its_first_start(tmp_path: Path) -> None:
    before = time.time()
    running = started(tmp_path, "fedavg")
    after = time.time()
    assert running.machine is not None
    attempt = Store(tmp_path / "state.sqlite").running_attempt()
    assert attempt is not None and before <= attempt.started <= after
    restarted = coordinator_for(tmp_path, "fedavg")  # replays the running attempt
    assert restarted.machine is not None
    # Before the fix this stayed 0.0, so the round's wall_s came out near 1.8e9 s.
    assert restarted._round_started == attempt.started
    assert restarted._phase_started >= attempt.started
    restarted._abort("test over")
    restarted.tick()
    record = restarted.history[-1]
    assert 0 <= record.wall_s < time.time() - before + 1
