"""A face-FL method on the aggregator (aggregator/method_state.py, the coordinator's part).

Real coordinators and real daemons in one process, joined by a transport that
calls the coordinator directly through the codec; the trainers are numpy
stand-ins with known outputs, so every figure below is predicted exactly:
FedFace's S is the sum of what the clients appended, the releases of round r
come back with round r + 1 byte for byte, the state is bound into the model
hash and survives a restart, and bad releases are refused with the status a
client would see (INVALID_ARGUMENT for shapes, NaN and oversize).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from aggregator.coordinator import Coordinator
from aggregator.servicer import AggregatorServicer, insecure_identity
from aggregator.settings import AggregatorSettings
from aggregator.store import Store
from clients.daemon import Daemon
from clients.training.synthetic import LocalUpdate
from protocol.errors import ConflictingMessage, InvalidMessage, UnknownClient, WrongPhase
from protocol.he_messages import AnyClientMessage
from protocol.messages import RoundStart
from protocol.method_messages import ClusterRelease, MethodState, bound_model_hash, server_step
from protocol.policy import ClientPolicy
from secagg.errors import ParameterError
from secagg.rng import DeterministicRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb

DIM = 8  # θ
D = 2  # embedding dimension: FedFace appends D² values
ROSTER = {1: b"", 2: b"", 3: b""}  # no signing keys: semi-honest, unsigned requests


def settings(state: Path, method: str, **overrides: Any) -> AggregatorSettings:
    options: dict[str, Any] = {
        "insecure": True,
        "state_dir": str(state),
        "dim": DIM,
        "rounds": 2,
        "profile": "semi-honest",
        "method": method,
        "embedding_dim": D,
        "dplc_clusters": 2,
        "max_weight": 8,
        "phase_timeout_s": 30.0,
        "start_timeout_s": 0.0,
        "poll_wait_s": 0.2,
        **overrides,
    }
    return AggregatorSettings(**options)


def coordinator_for(state: Path, method: str, **overrides: Any) -> Coordinator:
    coordinator = Coordinator(
        settings(state, method, **overrides),
        ROSTER,
        Store(state / "state.sqlite"),
        rng=DeterministicRandomSource(f"coordinator/{method}"),
    )
    coordinator.recover()
    return coordinator


class Direct:
    """A daemon's transport that calls the coordinator in process, through the codec."""

    def __init__(self, coordinator: Coordinator, client: int) -> None:
        self.coordinator = coordinator
        self.client = client

    def poll(self, epoch: int, after: int, timeout: float) -> pb.PollReply:
        e, seq, msg, finished = self.coordinator.poll(self.client, epoch, after, min(timeout, 0.2))
        reply = pb.PollReply(epoch=e, seq=seq, finished=finished)
        if msg is not None:
            reply.message.CopyFrom(codec.server_to_proto(msg))
        return reply

    def send(self, msg: AnyClientMessage, timeout: float = 60.0) -> None:
        wire = codec.client_to_proto(msg).SerializeToString()
        self.coordinator.submit(self.client, codec.parse_any_client_message(wire))

    def model(self, round_: int, timeout: float = 60.0) -> bytes:
        return self.coordinator.model_bytes(round_)


def release_of(client: int, round_: int, count: int = 1) -> ClusterRelease:
    angles = np.arange(count) + 0.3 * client + round_
    centers = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return ClusterRelease.of(
        client, round_, centers, 5.0 + client + np.arange(count), [0.1] * count
    )


@dataclass
class Stand:
    """A method trainer with known outputs (the face trainer's interface, numpy only)."""

    client: int
    method: str
    received: list[MethodState] = field(default_factory=list)
    sent: dict[int, ClusterRelease] = field(default_factory=dict)
    appended: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def weight(self) -> int:
        return self.client + 1

    def receive(self, state: MethodState) -> None:
        self.received.append(state)

    def __call__(self, model: np.ndarray, round_: int) -> LocalUpdate:
        vector = np.full(DIM, 0.01 * self.client)
        if self.method == "fedface":  # S_k / n_k
            s_k = np.outer([self.client, round_ + 1], [self.client, 1.0]) / 10
            self.appended[round_] = s_k.reshape(-1)
            vector = np.concatenate([vector, s_k.reshape(-1) / self.weight])
        release = None
        if self.method in ("fedgc", "privacyface"):
            release = self.sent[round_] = release_of(self.client, round_)
        return LocalUpdate(vector, None, self.weight, release=release)


def train(coordinator: Coordinator, method: str) -> dict[int, Stand]:
    """Run every round with three daemons in threads; the caller's thread drives the clock."""
    stands = {c: Stand(c, method) for c in ROSTER}
    daemons = [
        Daemon(
            c,
            Direct(coordinator, c),  # type: ignore[arg-type]
            stands[c],
            signing_key=None,
            roster={},
            policy=ClientPolicy(colluders=0).with_opt_in("semi-honest"),
            poll_timeout=0.2,
            method=method,
        )
        for c in ROSTER
    ]
    threads = [threading.Thread(target=d.run, daemon=True) for d in daemons]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while not coordinator.finished and time.monotonic() < deadline:
        coordinator.tick()
        time.sleep(0.005)
    for thread in threads:
        thread.join(timeout=5)
    assert coordinator.finished
    return stands


def test_fedface_state_is_the_sum_of_what_clients_appended(tmp_path: Path) -> None:
    coordinator = coordinator_for(tmp_path, "fedface")
    stands = train(coordinator, "fedface")
    for stand in stands.values():
        assert [s.round for s in stand.received] == [0, 1]
        assert stand.received[0].moment == b""
    s = stands[1].received[1].moment_matrix()
    expected = sum(stand.appended[0] for stand in stands.values())
    step = 2.0 / ((1 << 16) - 1)  # one quantisation level, times Σ n_k at most
    assert s is not None
    assert np.max(np.abs(s.reshape(-1) - expected)) <= 9 * step
    assert all(stand.received[1] == stands[1].received[1] for stand in stands.values())
    # θ moved by the weighted mean of the θ-parts only (Σ n_k·0.01·k / Σ n_k).
    mean_step = sum(0.01 * c * (c + 1) for c in ROSTER) / sum(c + 1 for c in ROSTER)
    assert np.allclose(coordinator.model, 2 * mean_step, atol=1e-3)


@pytest.mark.parametrize("method", ["fedgc", "privacyface"])
def test_releases_come_back_with_the_next_round_byte_for_byte(tmp_path: Path, method: str) -> None:
    coordinator = coordinator_for(tmp_path, method)
    stands = train(coordinator, method)
    sent_round0 = tuple(stands[c].sent[0] for c in sorted(stands))
    for stand in stands.values():
        assert stand.received[0] == MethodState(method, 0)
        assert stand.received[1].releases == sent_round0
    assert [r.method_releases for r in coordinator.history] == [3, 3]
    # The last round's releases are kept for a next round (and survive a restart).
    restarted = coordinator_for(tmp_path, method)
    assert restarted.methods is not None
    assert restarted.methods.state.releases == tuple(stands[c].sent[1] for c in sorted(stands))


def test_the_state_is_bound_into_the_model_hash(tmp_path: Path) -> None:
    coordinator = coordinator_for(tmp_path, "fedgc")
    for c in ROSTER:
        coordinator.poll(c, 0, 0, 0.0)
    coordinator.tick()
    _, _, start, _ = coordinator.poll(1, 0, 0, 0.0)
    assert isinstance(start, RoundStart) and start.state == MethodState("fedgc", 0)
    model = coordinator.model_bytes(0)
    assert start.config.model_hash == bound_model_hash(model, start.state)
    other = dataclasses.replace(start.state, releases=(release_of(2, 0),))
    assert bound_model_hash(model, other) != start.config.model_hash  # another state: abort
    assert bound_model_hash(model, None) != start.config.model_hash


def started(tmp_path: Path, method: str = "fedgc") -> Coordinator:
    coordinator = coordinator_for(tmp_path, method)
    for c in ROSTER:
        coordinator.poll(c, 0, 0, 0.0)
    coordinator.tick()
    assert coordinator.machine is not None
    return coordinator


def test_bad_releases_are_refused_with_a_reason(tmp_path: Path) -> None:
    coordinator = started(tmp_path)
    with pytest.raises(InvalidMessage, match="embedding_dim"):
        coordinator.submit(1, ClusterRelease.of(1, 0, np.eye(3)[:1], [5.0], [0.1]))
    with pytest.raises(InvalidMessage, match="dplc_clusters"):
        coordinator.submit(1, release_of(1, 0, count=3))
    with pytest.raises(WrongPhase):
        coordinator.submit(1, release_of(1, 5))
    coordinator.submit(1, release_of(1, 0))
    coordinator.submit(1, release_of(1, 0))  # an identical retry is fine
    with pytest.raises(ConflictingMessage):
        coordinator.submit(1, release_of(1, 0, count=2))
    assert coordinator.methods is not None
    assert list(coordinator.methods.releases) == [1]
    with pytest.raises(UnknownClient):  # not on the roster
        coordinator.submit(9, release_of(9, 0))


def test_releases_of_the_running_attempt_survive_a_restart(tmp_path: Path) -> None:
    coordinator = started(tmp_path)
    coordinator.submit(2, release_of(2, 0))
    restarted = coordinator_for(tmp_path, "fedgc")  # replays the running attempt
    assert restarted.methods is not None and restarted.machine is not None
    assert restarted.methods.releases == {2: release_of(2, 0)}
    with pytest.raises(ConflictingMessage):
        restarted.submit(2, release_of(2, 0, count=2))


def test_an_aggregator_without_a_releasing_method_refuses_releases(tmp_path: Path) -> None:
    for method in ("fedavg", "fedface"):
        coordinator = started(tmp_path / method, method)
        with pytest.raises((WrongPhase, InvalidMessage), match="releases"):
            coordinator.submit(1, release_of(1, 0))


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code


class Context:
    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Refused(code, details)


def test_malformed_releases_over_submit_are_invalid_argument_never_a_crash(
    tmp_path: Path,
) -> None:
    coordinator = started(tmp_path)
    servicer = AggregatorServicer(coordinator, insecure_identity, max_payload=1 << 20)
    servicer.ready.set()
    good = codec.client_to_proto(release_of(1, 0)).cluster_release
    nan = np.array([np.nan, 1.0], dtype="<f4").tobytes()
    broken = {
        "nan centre": {"centers": nan},
        "nan size": {"sizes": np.array([np.nan], dtype="<f4").tobytes()},
        "short centres": {"centers": good.centers[:4]},
        "not unit": {"centers": np.array([3.0, 4.0], dtype="<f4").tobytes()},
        "radius out of range": {"radii": np.array([4.0], dtype="<f4").tobytes()},
        "zero dim": {"dim": 0},
        "oversize": {
            "dim": 1,
            "centers": np.ones(5000, "<f4").tobytes(),
            "sizes": np.ones(5000, "<f4").tobytes(),
            "radii": np.zeros(5000, "<f4").tobytes(),
        },
        "too many for this aggregator": {
            "centers": np.tile(np.array([1.0, 0.0], "<f4"), 3).tobytes(),
            "sizes": np.ones(3, "<f4").tobytes(),
            "radii": np.zeros(3, "<f4").tobytes(),
        },
    }
    for name, change in broken.items():
        wire = pb.ClusterRelease()
        wire.CopyFrom(good)
        for key, value in change.items():
            setattr(wire, key, value)
        with pytest.raises(Refused) as refused:
            servicer.Submit(pb.ClientMessage(cluster_release=wire), Context())  # type: ignore[arg-type]
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT, name
    assert coordinator.methods is not None and coordinator.methods.releases == {}
    servicer.Submit(pb.ClientMessage(cluster_release=good), Context())  # type: ignore[arg-type]
    assert list(coordinator.methods.releases) == [1]


def test_a_daemon_refuses_a_round_of_another_method(tmp_path: Path) -> None:
    coordinator = started(tmp_path, "privacyface")
    stand = Stand(1, "fedavg")
    daemon = Daemon(
        1,
        Direct(coordinator, 1),  # type: ignore[arg-type]
        stand,
        signing_key=None,
        roster={},
        policy=ClientPolicy(colluders=0).with_opt_in("semi-honest"),
        poll_timeout=0.2,
        max_rounds=0,
    )
    _, _, start, _ = coordinator.poll(1, 0, 0, 0.0)
    daemon._handle(start)
    assert daemon.stats.rounds_aborted
    reason = daemon.stats.rounds_aborted[0][1]
    assert "runs method 'privacyface'" in reason and "'fedavg'" in reason
    assert stand.received == []  # refused before anything was downloaded or trained


def test_settings_refuse_what_the_service_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="trusted aggregator"):
        settings(tmp_path, "fedgc-reference")
    with pytest.raises(ParameterError, match="distributed DP"):
        settings(tmp_path, "fedface", dp_noise_multiplier=1.0)
    with pytest.raises(ParameterError, match="embedding_dim"):
        settings(tmp_path, "fedgc", embedding_dim=0)
    with pytest.raises(ParameterError, match="clip"):
        settings(tmp_path, "fedface", clip=0.5)
    ckks = {"mode": "ckks", "pki_dir": "unused", "dim": 64}
    with pytest.raises(ParameterError, match="masked rounds only"):  # DP noise needs masks
        settings(tmp_path, "privacyface", dp_noise_multiplier=1.0, **ckks)
    with pytest.raises(ParameterError, match="trusted aggregator"):
        settings(tmp_path, "fedgc-reference", **ckks)
    assert settings(tmp_path, "fedface", **ckks).vector_dim == 64 + D * D  # runs in ckks
    assert settings(tmp_path, "fedface").vector_dim == DIM + D * D
    assert settings(tmp_path, "projector", embedding_dim=0).vector_dim == DIM


def test_server_step_splits_the_mean() -> None:
    step, extra = server_step(np.array([0.5, -0.5, 0.25, 0.125]), 2, 8)
    assert step.tolist() == [0.5, -0.5] and extra.tolist() == [2.0, 1.0]


def test_the_aggregator_runs_every_method_without_torch() -> None:
    import subprocess
    import sys

    from clients.lab.cluster import child_env

    code = (
        "import sys, aggregator.server, aggregator.method_state, aggregator.coordinator; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), check=True
    )
    assert out.stdout.strip() == "False"
