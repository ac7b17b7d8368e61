"""Service hardening: replay refusal across a restart, and the insecure-mode loopback guard.

- Replay nonces (T28) are stored with each accepted message and reloaded when
  the running attempt is replayed, so a captured signed request replayed
  after the aggregator restarted is still FAILED_PRECONDITION; the same
  message under a fresh nonce (an honest retry) is still acknowledged once.
- ``insecure = true`` refuses a non-loopback ``listen`` address unless
  ``allow_insecure_remote`` forces it, in the server and through the CLI.
"""

from __future__ import annotations

import platform
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from aggregator.pki import init_pki
from aggregator.server import AggregatorServer, limit_malloc_arenas
from aggregator.settings import AggregatorSettings
from aggregator.tls import InsecureConfiguration
from clients.lab.cluster import CLI, child_env
from protocol.messages import RoundStart
from protocol.request_auth import NONCE_BYTES, sign_message
from secagg.errors import ParameterError
from secagg_pb import codec
from tests.integration.test_request_auth import advertise_of, signing_key
from tests.integration.test_robustness import Live, _connect, code_of, start_round

pytestmark = pytest.mark.integration

Code = grpc.StatusCode


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hardening") / "pki"
    init_pki(root, clients=3, server_names=["localhost", "127.0.0.1"], days=1)
    return root


@pytest.fixture
def make_live(tmp_path: Path, pki: Path) -> Iterator[Callable[[], Live]]:
    made: list[Live] = []

    def make() -> Live:
        settings = AggregatorSettings(
            listen="127.0.0.1:0",
            insecure=True,  # claimed identities; the roster still holds signing keys
            pki_dir=str(pki),
            profile="semi-honest",
            state_dir=str(tmp_path / "state"),
            dim=16,
            rounds=2,
            poll_wait_s=0.5,
            phase_timeout_s=60.0,
            max_workers=8,
        )
        live = _connect(AggregatorServer(settings))
        made.append(live)
        live.server.start()
        return live

    yield make
    for live in made:
        live.stop()


def test_a_replayed_nonce_is_refused_after_a_restart(
    make_live: Callable[[], Live], pki: Path
) -> None:
    live = make_live()
    _cohort, starts = start_round(live)
    start = starts[1]
    assert isinstance(start, RoundStart)
    rng = random.Random(4)
    key = signing_key(pki, 1)
    advertise = advertise_of(live, starts, 1)

    def signed() -> Any:
        auth = sign_message(
            key, advertise, session=start.config.nonce, nonce=rng.randbytes(NONCE_BYTES)
        )
        return codec.signed_client_to_proto(advertise, auth)

    captured = signed()
    assert code_of(lambda: live.stub.Submit(captured, timeout=5))[0] is Code.OK
    epoch = live.server.coordinator.epoch
    live.stop()  # the in-memory nonce set is gone with the process state

    again = make_live()  # same state directory: the running attempt is replayed
    coordinator = again.server.coordinator
    machine = coordinator.machine
    assert machine is not None and coordinator.epoch == epoch
    assert machine.accepted_count() == 1
    code, details = code_of(lambda: again.stub.Submit(captured, timeout=5))
    assert code is Code.FAILED_PRECONDITION and "nonce" in details, details
    # An honest retry of the same message signs a fresh nonce: acknowledged, counted once.
    retry = signed()
    assert code_of(lambda: again.stub.Submit(retry, timeout=5))[0] is Code.OK
    assert machine.accepted_count() == 1 and machine.excluded == {}
    assert coordinator.store.count_messages(epoch) == 1


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.7:50051", "example.org:1"])
def test_insecure_mode_refuses_a_non_loopback_address(tmp_path: Path, listen: str) -> None:
    settings = AggregatorSettings(
        listen=listen, insecure=True, profile="semi-honest", state_dir=str(tmp_path / "s")
    )
    with pytest.raises(InsecureConfiguration, match="local development"):
        AggregatorServer(settings, clients=3)
    assert not (tmp_path / "s").exists()  # refused before any state was touched


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:0", "[::1]:0"])
def test_insecure_mode_serves_on_loopback(tmp_path: Path, listen: str) -> None:
    settings = AggregatorSettings(
        listen=listen, insecure=True, profile="semi-honest", state_dir=str(tmp_path / "s")
    )
    try:
        server = AggregatorServer(settings, clients=3)
    except Exception as exc:  # a host without IPv6 loopback cannot bind [::1]
        if listen.startswith("[::1]"):
            pytest.skip(f"no IPv6 loopback: {exc}")
        raise
    server.stop(0)


def test_allow_insecure_remote_forces_it(tmp_path: Path) -> None:
    settings = AggregatorSettings(
        listen="0.0.0.0:0",
        insecure=True,
        allow_insecure_remote=True,
        profile="semi-honest",
        state_dir=str(tmp_path / "s"),
    )
    server = AggregatorServer(settings, clients=3)
    assert server.port > 0
    server.stop(0)


def test_serve_cli_refuses_insecure_on_all_interfaces(tmp_path: Path) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text('[aggregator]\nprofile = "semi-honest"\nstate_dir = "state"\n')
    cmd = [*CLI, "aggregator", "serve", "--config", str(config), "--insecure", "--clients", "3"]
    done = subprocess.run(
        [*cmd, "--listen", "0.0.0.0:0"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "local development only" in done.stderr and "0.0.0.0:0" in done.stderr
    assert "listening" not in done.stdout


def test_malloc_arenas_are_capped_on_glibc_only_when_asked() -> None:
    assert limit_malloc_arenas(0) is False  # 0: leave the allocator alone
    applied = limit_malloc_arenas(2)
    assert applied is (platform.libc_ver()[0] == "glibc")


@pytest.mark.parametrize(
    "bad", [{"keep_rounds": -1}, {"keep_checkpoints": -2}, {"malloc_arenas": -1}]
)
def test_settings_refuse_negative_retention_and_arenas(bad: dict[str, int]) -> None:
    with pytest.raises(ParameterError, match="≥ 0"):
        AggregatorSettings(insecure=True, **bad)
