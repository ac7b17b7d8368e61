"""Face-FL methods in CKKS rounds (mode = "ckks"): the coordinator and real daemons in process.

As in test_method_rounds.py the trainers are numpy stand-ins with known
outputs and the transport calls the coordinator through the codec; here the
rounds are homomorphic, so the aggregator never sees the mean: FedFace's S
must be what each daemon recovers from the sum it decrypts (Σ of what the
clients appended, within CKKS precision), the releases of round r must come
back with round r + 1's HEStart byte for byte, and the state must be bound
into the announced lineage, so a client shown another state sits out.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aggregator.coordinator import Coordinator
from aggregator.drivers import HEDriver
from aggregator.settings import AggregatorSettings
from aggregator.store import Store
from clients.daemon import Daemon
from clients.he_daemon import HERound, LocalModel
from protocol.he_flow import HEPhase
from protocol.he_messages import HEStart
from protocol.messages import ClientAbort
from protocol.method_messages import MethodState, lineage_digest
from protocol.policy import ClientPolicy
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.unit.aggregator.test_method_rounds import DIM, Direct, Stand, release_of

D = 2  # the stand-ins' embedding dimension (FedFace appends D² values)
CLIENTS = (1, 2, 3)
#: CKKS decrypts the weighted mean to ~1e-7; S is that times Σ n_k (= 9), then float32.
PRECISION = 1e-5


def keys() -> dict[int, SigningKey]:
    rng = DeterministicRandomSource("method-he-keys")
    return {c: signing_key(rng) for c in CLIENTS}


def coordinator_for(state: Path, method: str, **overrides: Any) -> Coordinator:
    options: dict[str, Any] = {
        "insecure": True,
        "pki_dir": "unused-in-process",
        "mode": "ckks",
        "state_dir": str(state),
        "dim": DIM,
        "rounds": 2,
        "method": method,
        "embedding_dim": D,
        "dplc_clusters": 2,
        "max_weight": 8,
        "learning_rate": 1.0,
        "phase_timeout_s": 30.0,
        "start_timeout_s": 0.0,
        "poll_wait_s": 0.2,
        **overrides,
    }
    coordinator = Coordinator(
        AggregatorSettings(**options),
        {c: k.public for c, k in keys().items()},
        Store(state / "state.sqlite"),
        rng=DeterministicRandomSource(f"he-coordinator/{method}"),
    )
    coordinator.recover()
    return coordinator


def daemon(coordinator: Coordinator, client: int, stand: Stand, method: str) -> Daemon:
    signing = keys()
    return Daemon(
        client,
        Direct(coordinator, client),  # type: ignore[arg-type]
        stand,
        signing_key=signing[client],
        roster={c: k.public for c, k in signing.items()},
        rng=DeterministicRandomSource(f"he-daemon/{client}"),
        poll_timeout=0.2,
        method=method,
        policy=ClientPolicy(colluders=0).with_opt_in("ckks"),
    )


def train(coordinator: Coordinator, method: str) -> tuple[dict[int, Stand], dict[int, Daemon]]:
    """Every round with three daemons in threads; this thread drives the clock."""
    stands = {c: Stand(c, method) for c in CLIENTS}
    daemons = {c: daemon(coordinator, c, stands[c], method) for c in CLIENTS}
    threads = [threading.Thread(target=d.run, daemon=True) for d in daemons.values()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not coordinator.finished and time.monotonic() < deadline:
        coordinator.tick()
        time.sleep(0.005)
    for thread in threads:
        thread.join(timeout=10)
    assert coordinator.finished
    assert all(d.stats.rounds_completed == [0, 1] for d in daemons.values())
    return stands, daemons


def test_fedface_daemons_recover_s_from_the_sum_they_decrypt(tmp_path: Path) -> None:
    coordinator = coordinator_for(tmp_path, "fedface")
    stands, daemons = train(coordinator, "fedface")
    weights = {c: stands[c].weight for c in CLIENTS}
    for r in (0, 1):  # S of round r: Σ_k n_k·(S_k/n_k), as appended, never seen by the server
        expected = sum(stands[c].appended[r] for c in CLIENTS)
        for c in CLIENTS:
            local = daemons[c]._he_local
            assert local is not None
            if r == 0:
                recovered = stands[c].received[1].moment_matrix()  # what round 1 trained with
            else:
                recovered = np.frombuffer(local.moment, dtype="<f4").reshape(D, D)
            assert recovered is not None
            assert np.max(np.abs(recovered.reshape(-1) - expected)) <= PRECISION
    for c in CLIENTS:
        assert [s.round for s in stands[c].received] == [0, 1]
        assert stands[c].received[0] == MethodState("fedface", 0)  # nothing in round 0
    assert coordinator.methods is not None
    assert coordinator.methods.state == MethodState("fedface", 2)  # no S on the aggregator
    # θ moved by the weighted mean of the θ-parts only (Σ n_k·0.01·k / Σ n_k), twice, η = 1.
    mean_step = sum(0.01 * c * weights[c] for c in CLIENTS) / sum(weights.values())
    models = [daemons[c]._he_local.model for c in CLIENTS]  # type: ignore[union-attr]
    assert models[0].shape == (DIM,)
    for model in models:
        np.testing.assert_array_equal(model, models[0])
    assert np.allclose(models[0], 2 * mean_step, atol=1e-6)


@pytest.mark.parametrize("method", ["fedgc", "privacyface"])
def test_releases_come_back_with_the_next_hestart_byte_for_byte(
    tmp_path: Path, method: str
) -> None:
    coordinator = coordinator_for(tmp_path, method)
    stands, daemons = train(coordinator, method)
    sent_round0 = tuple(stands[c].sent[0] for c in CLIENTS)
    for stand in stands.values():
        assert stand.received[0] == MethodState(method, 0)
        assert stand.received[1] == MethodState(method, 1, releases=sent_round0)
    assert [r.method_releases for r in coordinator.history] == [3, 3]
    lineages = {daemons[c]._he_local.lineage for c in CLIENTS}  # type: ignore[union-attr]
    assert isinstance(coordinator.driver, HEDriver)
    assert lineages == {coordinator.driver.state.lineage}
    restarted = coordinator_for(tmp_path, method)  # the last releases wait for a next round
    assert restarted.methods is not None
    assert restarted.methods.state.releases == tuple(stands[c].sent[1] for c in CLIENTS)


def first_start(coordinator: Coordinator) -> HEStart:
    for c in CLIENTS:
        coordinator.poll(c, 0, 0, 0.0)
    coordinator.tick()
    _, _, start, _ = coordinator.poll(1, 0, 0, 0.0)
    assert isinstance(start, HEStart)
    return start


def test_the_state_is_bound_into_the_announced_lineage(tmp_path: Path) -> None:
    coordinator = coordinator_for(tmp_path, "fedgc")
    start = first_start(coordinator)
    assert start.state == MethodState("fedgc", 0)
    assert isinstance(coordinator.driver, HEDriver)
    lineage = coordinator.driver.state.lineage
    assert start.config.model_hash == lineage_digest(lineage, start.state) != lineage
    assert start.config.dim == DIM  # fedgc appends nothing
    local = LocalModel.initial(coordinator.model_bytes(0))
    assert HERound.current(local, start)
    other = dataclasses.replace(start, state=MethodState("fedgc", 0, releases=(release_of(2, 0),)))
    assert not HERound.current(local, other)  # another state: this client sits out, saying so
    signing = keys()
    round_ = HERound(
        1,
        other,
        local,
        None,
        rng=DeterministicRandomSource(1),
        signing_key=signing[1],
        roster={c: k.public for c, k in signing.items()},
    )
    (reply,) = round_.handle(other)
    assert isinstance(reply, ClientAbort) and round_.phase is HEPhase.ABORTED
    fedface = first_start(coordinator_for(tmp_path / "fedface", "fedface"))
    assert fedface.config.dim == DIM + D * D  # [Δθ, S_k/n_k]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("another method", "runs method 'fedgc'"),
        ("a moment from the server", "decrypts"),
        ("distributed DP", "masked rounds only"),
    ],
)
def test_a_daemon_refuses_a_ckks_round_it_cannot_run(
    tmp_path: Path, case: str, reason: str
) -> None:
    coordinator = coordinator_for(tmp_path, "fedgc")
    start = first_start(coordinator)
    method = "fedavg" if case == "another method" else "fedgc"
    stand = Stand(1, method)
    client = daemon(coordinator, 1, stand, method)
    if case == "a moment from the server":
        start = dataclasses.replace(start, state=MethodState("fedgc", 0, moment=bytes(4)))
    if case == "distributed DP":
        client.dp = object()  # type: ignore[assignment]  # any plan: refused before it is used
    client._handle(start)
    assert len(client.stats.rounds_aborted) == 1 and reason in client.stats.rounds_aborted[0][1]
    assert stand.received == [] and stand.sent == {}  # refused before training
    assert client._he_local is None  # and before θ₀ was downloaded


def test_hestart_carries_the_state_over_the_wire(tmp_path: Path) -> None:
    start = first_start(coordinator_for(tmp_path, "privacyface"))
    with_releases = dataclasses.replace(
        start, state=MethodState("privacyface", 0, releases=(release_of(1, 0), release_of(3, 0)))
    )
    for msg in (start, with_releases, dataclasses.replace(start, state=None)):
        wire = codec.server_to_proto(msg).SerializeToString()
        back = codec.any_server_from_proto(pb.ServerMessage.FromString(wire))
        assert back == msg


def test_a_restart_mid_round_serves_the_same_bound_state(tmp_path: Path) -> None:
    coordinator = coordinator_for(tmp_path / "fedgc", "fedgc")
    start = first_start(coordinator)
    coordinator.submit(2, release_of(2, 0))
    coordinator.store.close()
    restarted = coordinator_for(tmp_path / "fedgc", "fedgc")  # replays the running attempt
    assert restarted.methods is not None and restarted.methods.releases == {2: release_of(2, 0)}
    _, _, again, _ = restarted.poll(1, restarted.epoch, 0, 0.0)
    assert again == start  # the same config (hash) and state as before the crash
