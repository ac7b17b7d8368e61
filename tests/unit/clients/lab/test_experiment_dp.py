"""`secagg experiment` distributed DP: options, planning for the minimum survivors, rounds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clients.lab.distributed_dp import DistributedDp, DpOptions
from protocol.build import make_config
from secagg.dp import PrivacyLedger, planned_epsilon
from secagg.dp.encode import clip_l2
from secagg.errors import ParameterError
from secagg.rng import DeterministicRandomSource

DIM = 300


def updates(clients: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = DeterministicRandomSource(seed)
    out = {}
    for k in range(1, clients + 1):
        words = np.frombuffer(rng.random_bytes(8 * DIM), dtype="<u8")
        out[k] = (words / 2.0**64 - 0.5) * 0.2
    return out


def test_options_are_checked() -> None:
    assert not DpOptions().enabled
    DpOptions().check(mode="ckks", clients=4)  # off: anything goes
    with pytest.raises(ParameterError, match="not both"):
        DpOptions(epsilon=1.0, noise_multiplier=1.0).check(mode="secagg", clients=4)
    with pytest.raises(ParameterError, match="modes"):
        DpOptions(epsilon=1.0).check(mode="ckks", clients=4)
    with pytest.raises(ParameterError, match="colluders"):
        DpOptions(epsilon=1.0, colluders=4).check(mode="secagg", clients=4)
    with pytest.raises(ParameterError, match="clip"):
        DpOptions(noise_multiplier=1.0, clip=0.0).check(mode="plain", clients=4)


def test_plan_targets_the_minimum_honest_survivors() -> None:
    ddp = DistributedDp.start(DpOptions(epsilon=5.0), mode="secagg", clients=7, rounds=4, dim=DIM)
    threshold = make_config(clients=7, dim=1).threshold
    assert ddp.colluders == 2  # fewer than a third of 7
    assert ddp.plan.min_honest == threshold - 2
    assert planned_epsilon(ddp.plan, 4) <= 5.0
    summary = ddp.summary()
    assert summary["epsilon_planned"] <= 5.0 and summary["target_epsilon"] == 5.0
    plain = DistributedDp.start(DpOptions(epsilon=5.0), mode="plain", clients=7, rounds=4, dim=DIM)
    assert plain.plan.min_honest == 7 - 2  # nobody may drop out in the clear


def test_secure_and_plain_rounds_sum_the_same_integers_and_charge_the_ledger() -> None:
    opts = DpOptions(noise_multiplier=1.0, clip=1.0)
    secure = DistributedDp.start(opts, mode="secagg", clients=5, rounds=3, dim=DIM)
    # The same plan summed in the clear (a plain run would plan for n − n_C survivors).
    plain = replace(secure, mode="plain", ledger=PrivacyLedger(secure.plan, colluders=1))
    ups = updates(5)
    a = secure.aggregate(ups, round_=0, seed=1)
    b = plain.aggregate(ups, round_=0, seed=1)
    assert np.array_equal(a.mean, b.mean)  # same levels, summed masked or in the clear
    assert a.parity_max_abs_error == 0.0 and a.parity_bound == 0.0
    clean = np.mean([clip_l2(u, 1.0) for u in ups.values()], axis=0)
    assert np.array_equal(a.plain_mean, clean)
    assert not np.allclose(a.mean, clean, atol=1e-3)  # noise was added
    assert secure.last["dp_survivors"] == 5 and secure.last["dp_honest"] == 5 - 1
    first = secure.last["dp_epsilon"]
    secure.aggregate(ups, round_=1, seed=1)
    assert secure.last["dp_epsilon"] > first
    assert secure.last["dp_epsilon_round"] == pytest.approx(first)


def test_extra_coordinates_are_refused() -> None:
    ddp = DistributedDp.start(
        DpOptions(noise_multiplier=1.0), mode="plain", clients=3, rounds=1, dim=DIM
    )
    with pytest.raises(ParameterError, match="shared parameters only"):
        ddp.aggregate({k: np.zeros(DIM + 5) for k in (1, 2, 3)}, round_=0, seed=0)


def test_experiment_config_refuses_dp_in_ckks() -> None:
    from clients.lab.experiment import ExperimentConfig

    with pytest.raises(ParameterError, match="modes"):
        ExperimentConfig(mode="ckks", dp_epsilon=4.0)
    cfg = ExperimentConfig(mode="secagg", dp_noise_multiplier=0.5, dp_colluders=1)
    assert cfg.dp.enabled and cfg.dp.colluders == 1


@pytest.mark.slow
def test_cli_experiment_records_epsilon_per_round(tmp_path: Path) -> None:
    """`secagg experiment --dp-epsilon`: each row has its round ε and the running total."""
    from secagg.cli import main

    out = tmp_path / "dp"
    code = main(
        [
            "experiment",
            "--data",
            "synthetic:16:4",
            "--clients",
            "3",
            "--rounds",
            "2",
            "--test-identities",
            "4",
            "--image-size",
            "16",
            "--mode",
            "secagg",
            "--dp-epsilon",
            "20",
            "--dp-clip",
            "0.5",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    plan = report["distributed_dp"]
    assert plan["target_epsilon"] == 20 and plan["epsilon_planned"] <= 20
    assert plan["l2_clip"] == 0.5
    rows = [r["extra"] for r in report["rounds"]]
    assert rows[0]["dp_epsilon"] == pytest.approx(rows[0]["dp_epsilon_round"])
    assert rows[0]["dp_epsilon"] < rows[1]["dp_epsilon"] <= 20
    assert all(r["dp_survivors"] == 3 for r in rows)
    assert all(row["parity_max_abs_error"] == 0.0 for row in report["rounds"])
