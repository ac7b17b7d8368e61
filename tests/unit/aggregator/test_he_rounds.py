"""HE rounds as the gRPC host runs them, in process: the coordinator, its log and replay,
the lineage, and the clients' own models (no sockets; tests/integration has those)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from aggregator import he_rounds
from aggregator.coordinator import Coordinator
from aggregator.drivers import HEDriver
from aggregator.settings import AggregatorSettings
from aggregator.store import Store
from clients.he_daemon import HERound, LocalModel
from clients.training.synthetic import SyntheticTrainer
from protocol.errors import WrongPhase
from protocol.he_flow import HEClientMachine, HEPhase, HEServerMachine
from protocol.he_messages import AnyServerMessage, HEConfig, HEJoin, HEKeys, HEStart, HEUpload
from protocol.he_model import apply_mean, model_sha256, next_lineage, sum_digest
from protocol.messages import ClientAbort, ServerAbort
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource

DIM = 40
CLIENTS = (1, 2, 3)


# ---------------------------------------------------------------- lineage and state


def test_lineage_chains_over_round_and_sum() -> None:
    start = model_sha256(np.zeros(DIM, np.float32))
    digest = sum_digest([b"a", b"bc"])
    one = next_lineage(start, 0, digest)
    assert one == next_lineage(start, 0, digest)  # both sides compute the same
    assert len({one, next_lineage(start, 1, digest), next_lineage(one, 0, digest)}) == 3
    assert sum_digest([b"a", b"bc"]) != sum_digest([b"ab", b"c"])  # framing is unambiguous
    with pytest.raises(ParameterError):
        next_lineage(b"short", 0, digest)


def test_state_survives_a_restart_and_a_corrupt_file_is_refused(tmp_path: Path) -> None:
    initial = hashlib.sha256(b"theta0").digest()
    assert he_rounds.load_state(tmp_path, initial) == he_rounds.HEState(0, initial, None)
    state = he_rounds.HEState(0, initial, None).after(0, [b"x"], (1, 3))
    assert state.round == 1 and state.in_sync == (1, 3)
    assert state.lineage == next_lineage(initial, 0, sum_digest([b"x"]))
    he_rounds.save_state(tmp_path, state)
    assert he_rounds.load_state(tmp_path, initial) == state
    (tmp_path / he_rounds.STATE_FILE).write_text('{"round": 1}')
    with pytest.raises(ParameterError, match="unreadable"):
        he_rounds.load_state(tmp_path, initial)


def test_only_in_sync_clients_are_eligible() -> None:
    fresh = he_rounds.HEState(0, bytes(32), None)
    later = he_rounds.HEState(1, bytes(32), (2, 3, 5))
    assert he_rounds.cohort([5, 1, 2, 3], fresh) == (1, 2, 3, 5)
    assert he_rounds.cohort([5, 1, 2, 3], later) == (2, 3, 5)
    assert he_rounds.eligible(later, 10) == 3 and he_rounds.eligible(fresh, 10) == 10
    assert len(he_rounds.cohort(range(1, 200), fresh)) == he_rounds.MAX_COHORT


def test_settings_refuse_ckks_without_keys_or_with_a_sum_too_large() -> None:
    base = {"insecure": True, "mode": "ckks"}
    with pytest.raises(ParameterError, match="pki_dir"):
        AggregatorSettings(**base)  # type: ignore[arg-type]
    limit = he_rounds.max_dim()
    assert 10**6 < limit < 2 * 10**6  # ~127 sums of 8192 values in 16 MiB
    AggregatorSettings(pki_dir="pki", dim=limit, **base)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="at most"):
        AggregatorSettings(pki_dir="pki", dim=limit + 1, **base)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="mode"):
        AggregatorSettings(insecure=True, mode="bfv")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the machines' host interface


def keys() -> dict[int, SigningKey]:
    rng = DeterministicRandomSource("he-rounds-keys")
    return {c: signing_key(rng) for c in (1, 2, 3, 4)}


def config(clients: tuple[int, ...] = (1, 2, 3, 4)) -> HEConfig:
    return he_rounds.make_config(
        round_=0,
        clients=clients,
        dim=DIM,
        clip=1.0,
        max_weight=1,
        learning_rate=1.0,
        nonce=bytes(32),
        lineage=hashlib.sha256(b"lineage").digest(),
    )


def test_a_client_abort_closes_the_join_phase_without_waiting() -> None:
    signing = keys()
    roster = {c: k.public for c, k in signing.items()}
    cfg = config()
    server = HEServerMachine(cfg, roster=roster)
    machines = {
        c: HEClientMachine(
            c, rng=DeterministicRandomSource(c), signing_key=signing[c], roster=roster
        )
        for c in (1, 2, 3)
    }
    for c, m in machines.items():
        m.set_input(np.zeros(DIM), weight=1, model_hash=cfg.model_hash)
        (join,) = m.handle(HEStart(cfg))
        server.receive(c, join)
    assert server.waiting_for() == {4} and not server.ready_to_advance()
    assert server.accepted_count() == 3
    server.receive(4, ClientAbort(4, 0, "model behind"))
    assert server.accepted_count() == 3 and "model behind" in server.excluded[4]
    assert server.ready_to_advance()
    out = server.advance()
    assert sorted(c for c, _ in out) == [1, 2, 3]  # no key goes to the client that left
    with pytest.raises(WrongPhase):
        server.receive(4, HEJoin(4, 0, bytes(32), bytes(64)))
    aborted = server.abort("operator")
    assert all(isinstance(m, ServerAbort) for _, m in aborted) and server.aborted


def test_members_with_different_models_refuse_the_session() -> None:
    """The model hash is signed into each join; one differing hash stops every member."""
    signing = keys()
    roster = {c: k.public for c, k in signing.items()}
    cfg = config((1, 2, 3))
    server = HEServerMachine(cfg, roster=roster)
    machines = {}
    for c in cfg.clients:
        m = HEClientMachine(
            c, rng=DeterministicRandomSource(c), signing_key=signing[c], roster=roster
        )
        own = hashlib.sha256(b"model" if c != 3 else b"another model").digest()
        m.set_input(np.zeros(DIM), weight=1, model_hash=cfg.model_hash, model_sha256=own)
        (join,) = m.handle(HEStart(cfg))
        server.receive(c, join)  # the server cannot judge models; the members do
        machines[c] = m
    for c, msg in server.advance():
        assert isinstance(msg, HEKeys)
        assert machines[c].handle(msg) == []  # the key holder seals nothing
        assert machines[c].phase is HEPhase.ABORTED
        assert "different model" in (machines[c].abort_reason or "")


# ---------------------------------------------------------------- the coordinator, in process


@dataclass
class Client:
    """A daemon without sockets: its model between rounds and its place in the outbox."""

    id: int
    key: SigningKey
    local: LocalModel | None = None
    round: HERound | None = None
    epoch: int = 0
    seq: int = 0
    means: dict[int, np.ndarray] = field(default_factory=dict)
    updates: dict[int, np.ndarray] = field(default_factory=dict)
    unsent: list[object] = field(default_factory=list)  # lost when the aggregator crashed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_coordinator(state: Path, roster: dict[int, bytes], clock: Clock) -> Coordinator:
    settings = AggregatorSettings(
        insecure=True,
        pki_dir="unused-in-process",
        mode="ckks",
        state_dir=str(state),
        dim=DIM,
        rounds=2,
        max_weight=3,
        learning_rate=0.5,
        phase_timeout_s=30.0,
        start_timeout_s=0.0,
    )
    coordinator = Coordinator(
        settings,
        roster,
        Store(state / "state.sqlite"),
        clock=clock,
        rng=DeterministicRandomSource("coordinator"),
    )
    coordinator.recover()
    return coordinator


def step(coordinator: Coordinator, clients: dict[int, Client], *, upto: int | None = None) -> int:
    """Deliver every queued message once and submit the replies; returns how many moved.

    ``upto`` stops (returning -1) at the HEUpload after that many were submitted:
    the aggregator "crashes" and that client keeps the reply to send again.
    """
    moved = 0
    for client in clients.values():
        while True:
            epoch, seq, msg, _ = coordinator.poll(client.id, client.epoch, client.seq, 0.0)
            if epoch != client.epoch:
                client.epoch, client.seq, client.round = epoch, 0, None
            if msg is None:
                break
            client.seq = seq
            moved += 1
            replies = react(coordinator, client, msg)
            for i, reply in enumerate(replies):
                if isinstance(reply, HEUpload) and upto is not None:
                    if upto == 0:
                        client.unsent = replies[i:]
                        return -1
                    upto -= 1
                coordinator.submit(client.id, reply)  # type: ignore[arg-type]
    coordinator.tick()
    return moved


def react(coordinator: Coordinator, client: Client, msg: AnyServerMessage) -> list[object]:
    if isinstance(msg, HEStart):
        if client.local is None:
            client.local = LocalModel.initial(coordinator.model_bytes(0))
        trainer = SyntheticTrainer(client.id, weight=client.id)
        update = trainer(client.local.model.copy(), msg.config.round)
        assert update.vector is not None
        client.updates[msg.config.round] = update.vector
        client.round = HERound(
            client.id,
            msg,
            client.local,
            update,
            rng=DeterministicRandomSource(f"c{client.id}-{msg.config.round}"),
            signing_key=client.key,
            roster=dict(coordinator.roster),
        )
    if client.round is None:
        return []
    replies: list[object] = list(client.round.handle(msg))  # type: ignore[arg-type]
    if client.round.mean is not None and client.round.phase is HEPhase.COMPLETED:
        client.means[client.round.config.round] = client.round.mean
    return replies


def run_until(coordinator: Coordinator, clients: dict[int, Client], done: object) -> None:
    for _ in range(200):
        step(coordinator, clients)
        if callable(done) and done():
            step(coordinator, clients)  # the clients fetch what the last step queued
            return
    raise AssertionError("the rounds did not finish")


def test_two_rounds_with_a_restart_in_the_middle(tmp_path: Path) -> None:
    signing = keys()
    roster = {c: signing[c].public for c in CLIENTS}
    clients = {c: Client(c, signing[c]) for c in CLIENTS}
    clock = Clock()
    coordinator = make_coordinator(tmp_path, roster, clock)
    with pytest.raises(WrongPhase, match="initial model"):
        coordinator.model_bytes(1)
    for c in CLIENTS:
        coordinator.poll(c, 0, 0, 0.0)  # present
    for _ in range(100):
        step(coordinator, clients)
        if coordinator.round == 1:
            break
    coordinator.tick()  # round 1 starts before clients 1 and 2 fetched round 0's sum ...
    assert coordinator.epoch == 2 and 0 not in clients[1].means
    step(coordinator, clients)  # ... which their next poll still brings, before round 1
    assert all(0 in clients[c].means for c in CLIENTS)
    assert isinstance(coordinator.driver, HEDriver)
    lineage_1 = coordinator.driver.state.lineage

    # Round 1: the aggregator dies after the joins, the key delivery and one upload were
    # committed, while a second upload is on its way.
    while step(coordinator, clients, upto=1) != -1:
        pass
    machine = coordinator.machine
    assert isinstance(machine, HEServerMachine) and machine.contributors == (1,)
    accepted = machine.accepted_count()
    coordinator.store.close()
    coordinator = make_coordinator(tmp_path, roster, clock)  # replays through a fresh machine
    replayed = coordinator.machine
    assert isinstance(replayed, HEServerMachine) and replayed is not machine
    assert replayed.accepted_count() == accepted and replayed.contributors == (1,)
    assert replayed.phase is HEPhase.UPLOAD
    for client in clients.values():  # the daemon's transport retries what was lost
        for reply in client.unsent:
            coordinator.submit(client.id, reply)  # type: ignore[arg-type]
    run_until(coordinator, clients, lambda: coordinator.finished)

    state = json.loads((tmp_path / he_rounds.STATE_FILE).read_text())
    assert state["round"] == 2 and state["in_sync"] == [1, 2, 3]
    assert coordinator.driver.state.lineage != lineage_1
    models = [clients[c].local.model for c in CLIENTS]  # type: ignore[union-attr]
    for model in models[1:]:
        np.testing.assert_array_equal(model, models[0])  # every copy took the same step
    theta = np.zeros(DIM, np.float32)
    for round_ in (0, 1):
        total = sum(c * np.clip(clients[c].updates[round_], -1, 1) for c in CLIENTS)
        reference = total / sum(CLIENTS)
        for c in CLIENTS:
            assert float(np.max(np.abs(clients[c].means[round_] - reference))) <= 1e-6
        theta = apply_mean(theta, clients[1].means[round_], 0.5)
    np.testing.assert_array_equal(models[0], theta)
    for c in CLIENTS:  # and each knows the lineage the aggregator will announce next
        assert clients[c].local.lineage == coordinator.driver.state.lineage
    records = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    assert [r["completed"] for r in records] == [True, True]
    assert all(r["weight_sum"] is None and len(r["total_sha256"]) == 64 for r in records)


def test_a_client_with_another_lineage_sits_out_and_says_so() -> None:
    cfg = config((1, 2, 3))
    local = LocalModel.initial(np.zeros(DIM, np.float32).tobytes())
    stale = dataclasses.replace(cfg, model_hash=hashlib.sha256(b"other").digest())
    start = HEStart(stale)
    assert not HERound.current(local, start)
    signing = keys()
    round_ = HERound(
        2,
        start,
        local,
        None,
        rng=DeterministicRandomSource(2),
        signing_key=signing[2],
        roster={c: k.public for c, k in signing.items()},
    )
    (reply,) = round_.handle(start)
    assert isinstance(reply, ClientAbort) and reply.client == 2
    assert round_.phase is HEPhase.ABORTED
