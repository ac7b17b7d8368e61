"""The real client daemon against a scripted, hostile aggregator (issue 14).

The transport here is the test's: it hands the daemon whatever poll replies
the test scripts (decoded by the real codec) and records what the daemon
sends, downloads and trains. The rules checked: a round outside the client's
policy is refused before the model is downloaded or anything trained, with a
typed abort; no server message stops the daemon; a client contributes at
most once per base model, remembered across restarts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from clients.daemon import Daemon
from clients.ledger import ContributionLedger
from clients.training.synthetic import LocalUpdate
from protocol.build import make_config
from protocol.config import RoundConfig
from protocol.he_messages import AnyClientMessage, HEConfig, HEStart
from protocol.he_model import model_sha256
from protocol.messages import AdvertiseKeys, ClientAbort, MaskedInput, RoundStart
from protocol.method_messages import bound_model_hash
from protocol.policy import ClientPolicy
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.unit.protocol.helpers import Harness

N, DIM = 7, 8
MODEL = np.linspace(-1, 1, DIM).astype("<f4").tobytes()


class Scripted:
    """A transport that replays scripted poll replies and records the daemon's traffic."""

    def __init__(self, replies: Iterable[pb.PollReply]) -> None:
        self.replies = list(replies)
        self.sent: list[AnyClientMessage] = []
        self.downloads = 0

    def poll(self, epoch: int, after: int, timeout: float) -> pb.PollReply:
        if not self.replies:
            return pb.PollReply(finished=True)
        return self.replies.pop(0)

    def send(self, msg: AnyClientMessage, timeout: float = 60.0) -> None:
        self.sent.append(msg)

    def model(self, round_: int, timeout: float = 60.0) -> bytes:
        self.downloads += 1
        return MODEL


class Counting:
    """A trainer that counts its calls and returns fixed levels."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: np.ndarray, round_: int) -> LocalUpdate:
        self.calls += 1
        return LocalUpdate(None, np.arange(DIM, dtype=np.uint64), 1)


def signing() -> dict[int, SigningKey]:
    rng = DeterministicRandomSource("daemon-policy")
    return {c: signing_key(rng) for c in range(1, N + 1)}


def daemon(
    transport: Scripted,
    policy: ClientPolicy | None = None,
    ledger: ContributionLedger | None = None,
) -> tuple[Daemon, Counting]:
    keys = signing()
    trainer = Counting()
    d = Daemon(
        1,
        transport,  # type: ignore[arg-type]
        trainer,
        signing_key=keys[1],
        roster={c: k.public for c, k in keys.items()},
        policy=policy,
        ledger=ledger,
        rng=DeterministicRandomSource("daemon-1"),
    )
    return d, trainer


def round_config(**changes: object) -> RoundConfig:
    base = make_config(clients=N, dim=DIM, profile="active", seed=b"daemon-policy")
    base = dataclasses.replace(base, model_hash=bound_model_hash(MODEL, None))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def reply(message: pb.ServerMessage, epoch: int = 1, seq: int = 1) -> pb.PollReply:
    out = pb.PollReply(epoch=epoch, seq=seq)
    out.message.CopyFrom(message)
    return out


def start(config: RoundConfig, epoch: int = 1) -> pb.PollReply:
    return reply(codec.server_to_proto(RoundStart(config)), epoch=epoch)


def aborts(transport: Scripted) -> list[str]:
    return [m.reason for m in transport.sent if isinstance(m, ClientAbort)]


# ---------------------------------------------------------------- downgrades


def test_semi_honest_round_is_refused_before_download_and_training() -> None:
    transport = Scripted([start(round_config(profile="semi-honest"))])
    d, trainer = daemon(transport)
    d.run()
    assert transport.downloads == 0 and trainer.calls == 0
    assert not any(isinstance(m, AdvertiseKeys) for m in transport.sent)
    (reason,) = aborts(transport)
    assert "profile 'semi-honest'" in reason
    assert d.stats.rounds_aborted and "policy" in d.stats.rounds_aborted[0][1]


def _he_start(scheme: str) -> pb.PollReply:
    config = HEConfig(
        round=0,
        clients=tuple(range(1, N + 1)),
        dim=DIM,
        scheme=scheme,  # type: ignore[arg-type]
        key_holder=2,  # a colluder, named by the server
        clip=1.0,
        max_weight=1,
        levels=1 << 16,
        nonce=bytes(32),
        model_hash=model_sha256(np.frombuffer(MODEL, "<f4").astype(np.float32)),  # θ₀'s lineage
    )
    return reply(codec.server_to_proto(HEStart(config)))


@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
def test_plain_he_round_is_refused_unless_opted_in(scheme: str) -> None:
    transport = Scripted([_he_start(scheme)])
    d, trainer = daemon(transport)
    d.run()
    assert transport.downloads == 0 and trainer.calls == 0
    (reason,) = aborts(transport)
    assert f"mode {scheme!r}" in reason
    # An operator who opts in gets the round (and a warning at start).
    transport = Scripted([_he_start(scheme)])
    d, trainer = daemon(transport, ClientPolicy(colluders=0).with_opt_in(scheme))
    d.run()
    assert trainer.calls == 1 and not aborts(transport)


# ---------------------------------------------------------------- robustness


def test_undecodable_server_messages_do_not_stop_the_daemon() -> None:
    bad_config = codec.server_to_proto(RoundStart(round_config()))
    bad_config.round_start.config.threshold = 0  # RoundConfig refuses it when decoding
    junk = pb.ServerMessage()
    junk.ParseFromString(b"")  # no field set at all
    transport = Scripted(
        [reply(bad_config, epoch=1), reply(junk, epoch=2), start(round_config(), epoch=3)]
    )
    d, trainer = daemon(transport, ClientPolicy(colluders=0))
    d.run()  # returns when the script says finished: nothing escaped
    reasons = [r for _, r in d.stats.rounds_aborted]
    assert any("unusable server message" in r for r in reasons), reasons
    assert trainer.calls == 1  # the valid round after the junk was joined
    assert any(isinstance(m, AdvertiseKeys) for m in transport.sent)


# ---------------------------------------------------------------- differencing


class AsMachine:
    """Stands in for client 1's machine in a Harness: the real daemon handles each message."""

    def __init__(self, d: Daemon, transport: Scripted) -> None:
        self.d, self.transport = d, transport

    def handle(self, msg: object) -> list[AnyClientMessage]:
        before = len(self.transport.sent)
        self.d._handle(msg)
        return list(self.transport.sent[before:])


def test_a_client_contributes_once_per_base_model_even_after_a_restart(tmp_path: Path) -> None:
    config = round_config()
    h = Harness(config, seed="differencing", without_input=[1])
    transport = Scripted([])
    ledger = ContributionLedger(tmp_path)
    d, _ = daemon(transport, ClientPolicy(colluders=0), ledger)
    d.signing_key, d.roster = h.keys[1], h.roster  # the harness's PKI
    h.clients[1] = AsMachine(d, transport)  # type: ignore[assignment]
    h.run()
    assert h.server.result is not None and 1 in h.server.result.survivors
    assert any(isinstance(m, MaskedInput) for m in transport.sent)
    assert ledger.contributed(config.model_hash)
    # The server now asks for a second sum over the same model (a new attempt, a new
    # nonce): the daemon refuses before downloading, and so does a restarted one.
    again = dataclasses.replace(config, nonce=bytes(range(32)))
    for restarted in (False, True):
        t2 = Scripted([start(again, epoch=2)])
        d2, trainer2 = daemon(t2, ClientPolicy(colluders=0), ContributionLedger(tmp_path))
        if not restarted:
            d2.ledger = ledger
        d2.run()
        assert t2.downloads == 0 and trainer2.calls == 0
        (reason,) = aborts(t2)
        assert "differencing rule" in reason


def test_round_attempts_per_model_are_capped(tmp_path: Path) -> None:
    ledger = ContributionLedger(tmp_path)
    model = bytes(32)
    for i in range(3):
        assert ledger.admit(model, bytes([i]) * 32, max_attempts=3) is None
    assert ledger.admit(model, bytes([1]) * 32, max_attempts=3) is None  # same attempt again
    assert "3 round attempts" in (ledger.admit(model, bytes([9]) * 32, max_attempts=3) or "")
    reopened = ContributionLedger(tmp_path)
    assert "3 round attempts" in (reopened.admit(model, bytes([9]) * 32, max_attempts=3) or "")
    assert reopened.admit(bytes([1]) * 32, bytes(32), max_attempts=3) is None  # another model


def test_an_unreadable_ledger_stops_the_daemon_from_starting(tmp_path: Path) -> None:
    (tmp_path / "contributions.json").write_text("{not json")
    with pytest.raises(ParameterError, match="unreadable"):
        ContributionLedger(tmp_path)


def test_the_ledger_folder_is_the_clients_own(tmp_path: Path) -> None:
    from clients.settings import load_client_settings

    config = tmp_path / "client.toml"
    config.write_text('[client]\nid = 2\npki_dir = "pki"\n')
    assert load_client_settings(config).state_dir == str(
        tmp_path / "pki" / "clients" / "2" / "state"
    )
    config.write_text("[client]\nid = 2\ninsecure = true\n")
    assert load_client_settings(config).state_dir == str(tmp_path / "client-2.state")
    assert load_client_settings(None, id=2, insecure=True).state_dir == ""  # memory only
    config.write_text('[client]\nid = 2\ninsecure = true\nstate_dir = "s"\n')
    assert load_client_settings(config).state_dir == str(tmp_path / "s")
