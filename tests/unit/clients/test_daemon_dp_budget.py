"""The daemon's distributed-DP budget, kept across restarts (issue 14, item 8).

A daemon whose durable DP ledger (in its state folder) says the next round
could take ε past its budget refuses that round with a typed abort before
anything secret leaves; the same daemon with a fresh folder joins. Uses the
scripted hostile-aggregator transport of test_daemon_policy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from clients.daemon import Daemon
from clients.dp import LEDGER_FILE, ClientDp
from clients.training.synthetic import LocalUpdate
from protocol.config import RoundConfig
from protocol.dp_round import round_plan
from protocol.messages import AdvertiseKeys, MaskedInput
from protocol.policy import ClientPolicy
from secagg.dp.accounting import ddg_epsilon, ddg_round
from secagg.rng import DeterministicRandomSource
from tests.unit.clients.test_daemon_policy import DIM, N, Scripted, aborts, round_config, signing
from tests.unit.clients.test_daemon_policy import start as start_reply

COLLUDERS = 2  # the policy's n_C for a roster of 7


def dp_config() -> RoundConfig:
    base = round_config()
    plan = round_plan(
        dim=DIM,
        clients=N,
        threshold=base.threshold,
        l2_clip=1.0,
        noise_multiplier=1.0,
        colluders=COLLUDERS,
    )
    return dataclasses.replace(
        base,
        levels=plan.levels,
        clip=plan.quantizer_clip,
        max_weight=1,
        modulus_bits=plan.modulus_bits(N),
    )


def client_dp(folder: Path, budget: float) -> ClientDp:
    return ClientDp(1.0, 1.0, colluders=COLLUDERS, epsilon_budget=budget, path=folder / LEDGER_FILE)


def run_round(folder: Path, budget: float) -> Scripted:
    transport = Scripted([start_reply(dp_config())])
    keys = signing()
    Daemon(
        1,
        transport,  # type: ignore[arg-type]
        lambda model, round_: LocalUpdate(np.full(DIM, 0.01), None, 1),
        signing_key=keys[1],
        roster={c: k.public for c, k in keys.items()},
        policy=ClientPolicy(),
        rng=DeterministicRandomSource("daemon-dp"),
        dp=client_dp(folder, budget),
    ).run()
    return transport


def test_a_budget_spent_before_a_restart_refuses_the_next_round(tmp_path: Path) -> None:
    config = dp_config()
    spent = client_dp(tmp_path / "used", budget=1e9)  # the daemon before its restart
    plan = spent.prepare(config)
    spent.record(survivors=N)
    # A round is checked as if only t survivors came: fresh, that fits; after one round, not.
    worst = ddg_round(plan, config.threshold - COLLUDERS)
    alone = ddg_epsilon([worst])
    after = ddg_epsilon([*spent.ledger.rounds, worst])  # type: ignore[union-attr]
    budget = (alone + after) / 2
    used = run_round(tmp_path / "used", budget)
    reasons = aborts(used)
    assert len(reasons) == 1 and "distributed-DP budget" in reasons[0]
    assert not any(isinstance(m, AdvertiseKeys | MaskedInput) for m in used.sent)
    fresh = run_round(tmp_path / "fresh", budget)  # the same budget with nothing spent
    assert aborts(fresh) == [] and any(isinstance(m, AdvertiseKeys) for m in fresh.sent)
