"""The round start rule (issue 18): a dropped client is not waited for until it polls again.

A fake clock drives plain rounds (the start rule does not depend on the profile).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aggregator.coordinator import Coordinator
from aggregator.settings import AggregatorSettings
from aggregator.store import Store
from protocol.messages import MaskedInput
from protocol.plain import encode_plain
from secagg.rng import DeterministicRandomSource

ROSTER = {1: b"", 2: b"", 3: b"", 4: b""}
PHASE_S = 2.0  # the dead client's last poll is still inside the presence horizon (20 s)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def coordinator(state: Path, clock: Clock, **overrides: object) -> Coordinator:
    options: dict[str, object] = {
        "insecure": True,
        "state_dir": str(state),
        "dim": 4,
        "rounds": 3,
        "profile": "plain",
        "phase_timeout_s": PHASE_S,
        "start_timeout_s": 60.0,
        "join_window_s": 3.0,
        "poll_wait_s": 5.0,
        **overrides,
    }
    c = Coordinator(
        AggregatorSettings(**options),  # type: ignore[arg-type]
        ROSTER,
        Store(state / "state.sqlite"),
        clock=clock,
        rng=DeterministicRandomSource("liveness"),
    )
    c.recover()
    return c


def poll(c: Coordinator, *clients: int) -> None:
    for client in clients:
        c.poll(client, c.epoch, 0, 0.0)


def send(c: Coordinator, *clients: int) -> None:
    for client in clients:
        payload = encode_plain(np.full(4, 0.1 * client), 1)
        c.submit(client, MaskedInput(client, c.round, payload))


def cohort(c: Coordinator) -> list[int]:
    assert c.machine is not None
    return list(c.machine.config.clients)


def test_a_dropout_is_not_waited_for_until_it_polls_again(tmp_path: Path) -> None:
    clock = Clock()
    c = coordinator(tmp_path, clock)
    poll(c, 1, 2, 3, 4)
    c.tick()  # the whole roster is present: at once
    assert cohort(c) == [1, 2, 3, 4]
    send(c, 1, 2, 3)  # client 4 dies before its masked input
    clock.now += PHASE_S
    c.tick()  # the deadline closes the round over 1, 2, 3
    c.tick()
    assert c.machine is None and c.history[-1].survivors == [1, 2, 3]
    poll(c, 1, 2, 3)  # client 4 still counts as present (its last poll is recent) ...
    assert 4 in c._present(clock.now)
    clock.now += 2.9
    c.tick()
    assert c.machine is None  # ... but is not waited for: only the join window is
    clock.now += 0.1
    c.tick()
    assert cohort(c) == [1, 2, 3]  # 3 s after the last round, not start_timeout_s (60 s)
    send(c, 1, 2, 3)  # all answered: the round closes at once
    c.tick()
    first, second = c.history
    assert (first.start_wait_s, first.waited_for, first.not_waited_for) == (0.0, [], [])
    assert (second.start_wait_s, second.waited_for, second.not_waited_for) == (3.0, [], [4])
    clock.now += 0.5
    poll(c, 1, 2, 3, 4)  # client 4 is back: it is awaited again, and all are present
    c.tick()
    assert cohort(c) == [1, 2, 3, 4]


def test_a_late_client_joins_the_next_round(tmp_path: Path) -> None:
    clock = Clock()
    c = coordinator(tmp_path, clock)
    poll(c, 1, 2, 3, 4)
    c.tick()
    send(c, 1, 2, 3)
    clock.now += PHASE_S
    c.tick()
    c.tick()
    poll(c, 1, 2, 3)
    clock.now += 3.0
    c.tick()
    assert cohort(c) == [1, 2, 3]
    poll(c, 4)  # restarted during the round: too late for it
    send(c, 1, 2, 3)
    c.tick()
    poll(c, 1, 2, 3)
    c.tick()  # every roster client is present again: no join window
    assert cohort(c) == [1, 2, 3, 4]
    assert c.history[-1].completed


def test_the_first_round_waits_start_timeout_for_a_client_never_seen(tmp_path: Path) -> None:
    clock = Clock()
    c = coordinator(tmp_path, clock, start_timeout_s=20.0, poll_wait_s=10.0)
    poll(c, 1, 2, 3)
    clock.now += 10.0  # well past the join window: client 4 was never seen, so it is awaited
    c.tick()
    assert c.machine is None
    clock.now += 10.0
    poll(c, 1, 2, 3)
    c.tick()
    assert cohort(c) == [1, 2, 3]
    send(c, 1, 2, 3)
    c.tick()
    record = c.history[-1]
    assert (record.start_wait_s, record.waited_for, record.not_waited_for) == (20.0, [4], [])


def test_min_clients_present_still_starts_at_once(tmp_path: Path) -> None:
    clock = Clock()
    c = coordinator(tmp_path, clock, min_clients=3)
    poll(c, 1, 2, 3)
    c.tick()
    assert cohort(c) == [1, 2, 3]


def test_a_silent_client_is_not_waited_for_after_its_presence_lapses(tmp_path: Path) -> None:
    """Seen once, then silent past the horizon (3 × poll_wait_s + 5 s): not awaited."""
    clock = Clock()
    c = coordinator(tmp_path, clock, poll_wait_s=1.0)  # horizon 8 s
    poll(c, 4)
    clock.now += 9.0
    poll(c, 1, 2, 3)
    c.tick()
    assert cohort(c) == [1, 2, 3]  # the join window has passed since the aggregator started
    send(c, 1, 2, 3)
    c.tick()
    assert c.history[-1].not_waited_for == [4]
