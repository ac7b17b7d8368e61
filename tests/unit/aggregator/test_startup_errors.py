"""Operator-facing start-up failures are one clear line (issue 15, item 8)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aggregator import tls
from aggregator.pki import init_pki, misplaced_secrets
from aggregator.store import Store
from aggregator.tls import InsecureConfiguration, check_server_security
from clients.lab.cluster import CLI, child_env


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startup") / "pki"
    init_pki(root, clients=3, server_names=["localhost", "127.0.0.1"], days=1)
    return root


def shifted(delta: timedelta) -> type[datetime]:
    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> Clock:  # type: ignore[override]
            return cls.fromtimestamp((datetime.now(UTC) + delta).timestamp(), UTC)

    return Clock


def test_an_expired_or_not_yet_valid_certificate_is_refused(
    pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_server_security(False, pki)  # valid today
    monkeypatch.setattr(tls, "datetime", shifted(timedelta(days=3)))
    with pytest.raises(InsecureConfiguration, match="expired on"):
        check_server_security(False, pki)
    monkeypatch.setattr(tls, "datetime", shifted(timedelta(days=-3)))
    with pytest.raises(InsecureConfiguration, match="not valid before"):
        check_server_security(False, pki)


@pytest.mark.parametrize("secret", ["ca.key", "roster.key"])
def test_consortium_secrets_in_the_aggregators_folder_are_refused(
    tmp_path: Path, secret: str
) -> None:
    """Whoever runs the aggregator must not hold the keys that mint clients or sign rosters."""
    root = tmp_path / "pki"
    paths = init_pki(root, clients=2, server_names=["localhost"], days=1)
    assert not misplaced_secrets(paths) and paths.ca_key.parent == tmp_path / "pki-consortium"
    check_server_security(False, root)
    (root / secret).write_bytes((paths.consortium / secret).read_bytes())
    with pytest.raises(InsecureConfiguration, match=f"{secret} lies in the aggregator's"):
        check_server_security(False, root)


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "aggregator", "serve", "--config", str(config), "--clients", "3"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )


def config_file(folder: Path, **extra: str) -> Path:
    config = folder / "aggregator.toml"
    lines = [
        "[aggregator]",
        'listen = "127.0.0.1:0"',
        'state_dir = "state"',
        "insecure = true",
        'profile = "semi-honest"',
        "dim = 4",
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def one_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("secagg: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[-1], proc.stderr


def test_a_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    store = Store(tmp_path / "state" / "state.sqlite")
    store.save_checkpoint(1, np.zeros(4, dtype=np.float32))
    store.close()
    for model in (tmp_path / "state" / "checkpoints").glob("model-*.npy"):
        model.unlink()
    one_line(serve(config_file(tmp_path)), "FileNotFoundError", "checkpoints")


def test_an_operator_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line(serve(config_file(tmp_path, operator_listen=f'"127.0.0.1:{port}"')), "Address")


def test_a_stale_request_does_not_make_its_sender_present(tmp_path: Path) -> None:
    """Issue 15 item 9: presence counts only requests for the running attempt."""
    from aggregator.coordinator import Coordinator
    from aggregator.settings import AggregatorSettings
    from aggregator.spool import SpooledPayload
    from protocol.errors import WrongPhase

    settings = AggregatorSettings(
        insecure=True,
        profile="semi-honest",
        state_dir=str(tmp_path / "state"),
        dim=4,
        start_timeout_s=600.0,
    )
    store = Store(tmp_path / "state" / "state.sqlite")
    coordinator = Coordinator(settings, {1: b"", 2: b"", 3: b""}, store)
    coordinator.recover()
    try:
        with SpooledPayload(None) as payload:
            payload.write(b"\0" * 40)
            with pytest.raises(WrongPhase):
                coordinator.submit_masked(2, 7, payload)  # no round 7 is running
        coordinator.poll(1, 0, 0, 0.0)
        assert coordinator.status()["present"] == [1]
    finally:
        store.close()
