"""The client's DP ledgers survive a restart (new objects on the same folder).

Each ledger (DPLC releases, FedFace's S, distributed DP) keeps what was
spent in the client's ``state_dir``; a restart must neither reset it nor let
the budget be overspent, and an unreadable ledger must stop the client with
one line rather than start afresh.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from clients.dp import LEDGER_FILE, ClientDp
from clients.training.face_trainer import (
    DPLC_LEDGER_FILE,
    FEDFACE_LEDGER_FILE,
    FaceTrainer,
    FaceTrainingSettings,
    initial_model,
)
from clients.training.methods import DplcLedger, MomentLedger, dplc_config
from protocol.config import RoundConfig
from protocol.dp_round import round_plan
from secagg.errors import ParameterError

ROWS = np.random.default_rng(1).standard_normal((20, 6))
PLANES = np.random.default_rng(2).standard_normal((1, 6))


def dplc(folder: Path) -> DplcLedger:
    config = dplc_config(4.0, 1e-5, releases=3, bits=1, clusters=2)
    return DplcLedger(config, 1e-5, budget=3, noise=np.random.default_rng(0), path=folder / "l")


def test_dplc_restart_keeps_the_spent_budget_and_refuses_past_it(tmp_path: Path) -> None:
    first = dplc(tmp_path)
    first.release(ROWS, PLANES)
    first.release(ROWS, PLANES)
    again = dplc(tmp_path)  # the daemon restarted
    assert again.releases == 2 and again.epsilon == pytest.approx(first.epsilon)
    again.release(ROWS, PLANES)
    with pytest.raises(ParameterError, match="budget covers 3 releases"):
        dplc(tmp_path).release(ROWS, PLANES)  # and once more after another restart


def test_the_charge_is_on_disk_before_the_release_is_returned(tmp_path: Path) -> None:
    ledger = MomentLedger(1.0, 1e-5, budget=2, noise=np.random.default_rng(0), path=tmp_path / "s")
    ledger.release(np.eye(4))
    reread = MomentLedger(1.0, 1e-5, budget=2, noise=np.random.default_rng(0), path=tmp_path / "s")
    assert reread.spent.releases == 1 and reread.spent.rho == pytest.approx(ledger.spent.rho)


@pytest.mark.parametrize("content", ["{not json", '{"version": 1}', '{"version": 2, "rho": 0}', ""])
def test_a_corrupt_ledger_refuses_to_start(tmp_path: Path, content: str) -> None:
    (tmp_path / "l").write_text(content)
    with pytest.raises(ParameterError, match=r"DPLC ledger .* not starting"):
        dplc(tmp_path)


def face(method: str, folder: Path, **overrides: object) -> FaceTrainer:
    settings = FaceTrainingSettings(
        data="synthetic:12:4",
        shards=3,
        image_size=16,
        embedding_dim=8,
        batch_size=16,
        seed=1,
        device="cpu",
        threads=1,
        method=method,
        dplc_bits=1,
    )
    return FaceTrainer(1, dataclasses.replace(settings, **overrides), folder)


def test_fedface_s_budget_is_kept_across_a_daemon_restart(tmp_path: Path) -> None:
    t = face("fedface", tmp_path, fedface_releases=2)
    theta = initial_model(t.settings)
    t(theta, 0)
    assert (tmp_path / FEDFACE_LEDGER_FILE).exists()
    restarted = face("fedface", tmp_path, fedface_releases=2)
    restarted(theta, 1)
    assert restarted.last["fedface_releases"] == 2
    with pytest.raises(ParameterError, match="FedFace S budget"):
        face("fedface", tmp_path, fedface_releases=2)(theta, 2)


def test_a_corrupt_face_ledger_stops_the_trainer_at_start(tmp_path: Path) -> None:
    (tmp_path / DPLC_LEDGER_FILE).write_text('{"version": 1, "rho": "lots", "releases": 1}')
    with pytest.raises(ParameterError, match=r"DPLC ledger .* not starting"):
        face("privacyface", tmp_path)
    (tmp_path / FEDFACE_LEDGER_FILE).write_text('{"version": 1, "rho": -1, "releases": 1}')
    with pytest.raises(ParameterError, match=r"FedFace S ledger .* not starting"):
        face("fedface", tmp_path)


def dp_config(threshold: int = 3) -> RoundConfig:
    plan = round_plan(
        dim=8, clients=4, threshold=threshold, l2_clip=1.0, noise_multiplier=1.0, colluders=1
    )
    return RoundConfig(
        round=0,
        clients=(1, 2, 3, 4),
        threshold=threshold,
        dim=8,
        modulus_bits=plan.modulus_bits(4),
        clip=plan.quantizer_clip,
        levels=plan.levels,
        max_weight=1,
        profile="active",
        degree=None,
        nonce=b"\x00" * 32,
        model_hash=b"\x00" * 32,
    )


def client_dp(folder: Path, budget: float) -> ClientDp:
    return ClientDp(1.0, 1.0, colluders=1, epsilon_budget=budget, path=folder / LEDGER_FILE)


def test_distributed_dp_ledger_survives_a_restart_and_refuses_an_overspend(
    tmp_path: Path,
) -> None:
    dp = client_dp(tmp_path, budget=1e9)
    dp.prepare(dp_config())
    assert dp.budget_problem(dp_config()) is None
    one = dp.record(survivors=4)
    restarted = client_dp(tmp_path, budget=1e9)
    assert restarted.epsilon == pytest.approx(one.epsilon_cumulative)
    restarted.prepare(dp_config())
    two = restarted.record(survivors=4)
    assert two.epsilon_cumulative > one.epsilon_cumulative
    # A budget the next round could exceed: refused after a restart too.
    tight = client_dp(tmp_path, budget=two.epsilon_cumulative * 1.01)
    tight.prepare(dp_config())
    problem = tight.budget_problem(dp_config())
    assert problem is not None and "distributed-DP budget" in problem


def test_a_corrupt_distributed_dp_ledger_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILE).write_text('{"version": 1, "rounds": [{"honest": 3}]}')
    with pytest.raises(ParameterError, match=r"DP ledger .* not starting"):
        client_dp(tmp_path, budget=10.0)
