"""bfv-masked rounds as the gRPC host runs them, in process: settings, the coordinator's
log and replay of the hybrid machine, and what a bad client input costs (nothing accepted).
Real processes: tests/integration/test_he_masked_grpc.py."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aggregator import he_rounds
from aggregator.coordinator import Coordinator
from aggregator.settings import AggregatorSettings
from aggregator.store import Store
from clients.he_daemon import HEMaskedRound, LocalModel
from clients.training.synthetic import SyntheticTrainer, exact_levels
from protocol.client import ClientPhase
from protocol.errors import AuthenticationFailed, InvalidMessage, WrongPhase
from protocol.he_masked import HEMaskedClientMachine, HEMaskedServerMachine
from protocol.he_messages import (
    AnyServerMessage,
    HEJoin,
    HEKeyDelivery,
    HEMaskedStart,
    HEUpload,
)
from protocol.messages import AdvertiseKeys, MaskedInput, ServerAbort
from protocol.policy import ClientPolicy
from protocol.server import ServerPhase
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource

DIM = 24
LEVELS = 1 << 16
CLIENTS = (1, 2, 3, 4)

# ---------------------------------------------------------------- settings


def settings(**changes: Any) -> AggregatorSettings:
    base: dict[str, Any] = {"insecure": True, "pki_dir": "pki", "mode": "bfv-masked", "dim": DIM}
    return AggregatorSettings(**{**base, **changes})


def test_settings_accept_bfv_masked_and_refuse_what_it_cannot_run() -> None:
    assert settings().mode == "bfv-masked"
    with pytest.raises(ParameterError, match="pki_dir"):
        AggregatorSettings(insecure=True, mode="bfv-masked")
    with pytest.raises(ParameterError, match="active profile"):
        settings(profile="semi-honest")
    with pytest.raises(ParameterError, match="complete graph"):
        settings(degree=4)
    with pytest.raises(ParameterError, match="FedAvg"):
        settings(dp_noise_multiplier=1.0)
    limit = he_rounds.max_masked_dim()
    assert 10**6 < limit < 2 * 10**6  # ~127 BFV sums of 8192 values in 16 MiB
    with pytest.raises(ParameterError, match="at most"):
        settings(dim=limit + 1)
    with pytest.raises(ParameterError, match="levels"):  # 64 clients' sum would wrap t
        settings(levels=1 << 20, max_weight=100)
    # The upload cap the servicer applies: a fresh ciphertext per 8192 values, and framing.
    assert he_rounds.masked_upload_cap(DIM) < he_rounds.masked_upload_cap(10_000)


# ---------------------------------------------------------------- the coordinator, in process


@dataclass
class Client:
    """A daemon without sockets: its model between rounds and its place in the outbox."""

    id: int
    key: SigningKey
    local: LocalModel | None = None
    round: HEMaskedRound | None = None
    epoch: int = 0
    seq: int = 0
    totals: dict[int, np.ndarray] = field(default_factory=dict)
    held: list[MaskedInput] = field(default_factory=list)  # not yet sent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_coordinator(state: Path, roster: dict[int, bytes], clock: Clock) -> Coordinator:
    s = settings(
        state_dir=str(state),
        rounds=2,
        threshold=3,
        max_weight=4,
        learning_rate=0.5,
        phase_timeout_s=30.0,
        start_timeout_s=0.0,
    )
    coordinator = Coordinator(
        s, roster, Store(state / "state.sqlite"), clock=clock, rng=DeterministicRandomSource("c")
    )
    coordinator.recover()
    return coordinator


def react(coordinator: Coordinator, client: Client, msg: AnyServerMessage) -> list[object]:
    if isinstance(msg, HEMaskedStart):
        if client.local is None:
            client.local = LocalModel.initial(coordinator.model_bytes(0))
        trainer = SyntheticTrainer(client.id, weight=client.id, exact=True)
        client.round = HEMaskedRound(
            client.id,
            msg,
            client.local,
            trainer(client.local.model.copy(), msg.config.round),
            rng=DeterministicRandomSource(f"c{client.id}-{msg.config.round}"),
            signing_key=client.key,
            roster=dict(coordinator.roster),
            policy=ClientPolicy(colluders=0),
        )
    if client.round is None:
        return []
    replies: list[object] = list(client.round.handle(msg))  # type: ignore[arg-type]
    if client.round.phase is ClientPhase.COMPLETED and client.round.machine.total is not None:
        client.totals[client.round.config.round] = client.round.machine.total
    return replies


def step(
    coordinator: Coordinator, clients: dict[int, Client], hold: frozenset[int] = frozenset()
) -> int:
    """Deliver every queued message once and submit the replies (``hold``: keep MaskedInputs)."""
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
            for reply in react(coordinator, client, msg):
                if isinstance(reply, MaskedInput) and client.id in hold:
                    client.held.append(reply)
                    continue
                coordinator.submit(client.id, reply)  # type: ignore[arg-type]
    coordinator.tick()
    return moved


def expected_total(round_: int, survivors: tuple[int, ...]) -> np.ndarray:
    total = np.zeros(DIM, dtype=np.uint64)
    for c in survivors:
        total += np.uint64(c) * exact_levels(c, round_, DIM, LEVELS).astype(np.uint64)
    return total


def test_two_rounds_with_a_restart_and_a_bad_upload(tmp_path: Path) -> None:
    rng = DeterministicRandomSource("he-masked-rounds")
    signing = {c: signing_key(rng) for c in CLIENTS}
    roster = {c: k.public for c, k in signing.items()}
    clients = {c: Client(c, signing[c]) for c in CLIENTS}
    clock = Clock()
    coordinator = make_coordinator(tmp_path, roster, clock)
    for c in CLIENTS:
        coordinator.poll(c, 0, 0, 0.0)  # present

    # Round 0: clients 2 and 3 hold their masked inputs back; 1 and 4 upload.
    for _ in range(20):
        step(coordinator, clients, hold=frozenset({2, 3}))
        if clients[2].held and clients[3].held:
            break
    machine = coordinator.machine
    assert isinstance(machine, HEMaskedServerMachine) and machine.phase is ServerPhase.MASKED
    assert machine.waiting_for() == {2, 3}

    # Bad client input gets a clear error and costs nothing accepted: a truncated upload
    # excludes its sender (its masks come off by Shamir recovery, as in SecAgg); a ckks
    # upload in a hybrid round is refused without excluding anyone.
    accepted = machine.accepted_count()
    good = clients[2].held.pop()
    with pytest.raises(InvalidMessage, match="truncated"):
        coordinator.submit(2, MaskedInput(2, 0, good.payload[:-10]))
    with pytest.raises(WrongPhase, match="no place"):
        coordinator.submit(3, HEUpload(3, 0, (b"x",), b"s"))
    assert machine.accepted_count() == accepted
    assert set(machine.excluded) == {2} and machine.waiting_for() == {3}

    # The aggregator dies; a fresh machine replays the log to the same place.
    coordinator.store.close()
    coordinator = make_coordinator(tmp_path, roster, clock)
    replayed = coordinator.machine
    assert isinstance(replayed, HEMaskedServerMachine) and replayed is not machine
    assert replayed.accepted_count() == accepted and replayed.phase is ServerPhase.MASKED
    assert replayed.excluded == machine.excluded
    coordinator.submit(3, clients[3].held.pop())  # client 3's transport sends it now
    for _ in range(100):
        step(coordinator, clients)
        if coordinator.finished:
            step(coordinator, clients)  # the clients fetch the last sum
            break
    assert coordinator.finished

    records = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    assert [r["completed"] for r in records] == [True, True]
    assert records[0]["survivors"] == [1, 3, 4] and "truncated" in records[0]["excluded"]["2"]
    assert records[1]["cohort"] == [1, 3, 4]  # client 2 never got round 0's sum
    for record in records:
        survivors = tuple(record["survivors"])
        assert record["weight_sum"] is None and len(record["total_sha256"]) == 64
        for c in survivors:
            np.testing.assert_array_equal(
                clients[c].totals[record["round"]], expected_total(record["round"], survivors)
            )
    state = json.loads((tmp_path / he_rounds.STATE_FILE).read_text())
    assert state["round"] == 2 and state["in_sync"] == list(records[1]["survivors"])
    models = [clients[c].local.model for c in records[1]["survivors"]]  # type: ignore[union-attr]
    assert all(np.array_equal(m, models[0]) for m in models)  # every copy took the same step


# ---------------------------------------------------------------- the machine's host interface


def test_ceremony_messages_count_once_and_bad_ones_lose_nothing() -> None:
    """What the coordinator relies on: accepted_count, waiting_for, exclusions, clear errors."""
    rng = DeterministicRandomSource("he-masked-host")
    signing = {c: signing_key(rng) for c in (1, 2, 3)}
    roster = {c: k.public for c, k in signing.items()}
    config = he_rounds.make_masked_config(
        round_=0,
        clients=(1, 2, 3),
        threshold=3,
        dim=DIM,
        clip=1.0,
        levels=LEVELS,
        max_weight=1,
        learning_rate=1.0,
        nonce=bytes(32),
        lineage=bytes(32),
    )
    server = HEMaskedServerMachine(config, roster=roster)
    machines = {
        c: HEMaskedClientMachine(
            c,
            rng=DeterministicRandomSource(f"host-{c}"),
            signing_key=signing[c],
            roster=roster,
            policy=ClientPolicy(colluders=0),
        )
        for c in (1, 2, 3)
    }
    replies = {c: machines[c].handle(HEMaskedStart(config)) for c in (1, 2, 3)}
    join, advertise = replies[1]
    assert isinstance(join, HEJoin) and isinstance(advertise, AdvertiseKeys)
    assert server.waiting_for() == {1, 2, 3}
    server.receive(1, join)
    server.receive(1, join)  # an identical retry is not a new message
    assert server.accepted_count() == 1 and server.waiting_for() == {1, 2, 3}
    server.receive(1, advertise)
    assert server.accepted_count() == 2 and server.waiting_for() == {2, 3}
    assert not server.ready_to_advance()
    forged = dataclasses.replace(replies[2][0], signature=bytes(64))
    with pytest.raises(AuthenticationFailed):
        server.receive(2, forged)  # excluded: the roster key does not sign it
    assert set(server.excluded) == {2} and server.accepted_count() == 2
    with pytest.raises(WrongPhase, match="not accepted"):
        server.receive(3, HEKeyDelivery(3, 0, b"", ()))  # not the key holder, not now
    with pytest.raises(WrongPhase, match="no place"):
        server.receive(3, HEUpload(3, 0, (), b""))
    assert 3 not in server.excluded and server.accepted_count() == 2
    for msg in replies[3]:
        server.receive(3, msg)
    assert server.ready_to_advance() and server.accepted_count() == 4
    assert server.abort("operator")[0][1] == ServerAbort("operator")
    assert server.aborted and server.waiting_for() == set()
