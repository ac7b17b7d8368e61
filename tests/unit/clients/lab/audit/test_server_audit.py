"""`secagg audit server`: the malicious-aggregator catalogue against two client configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.lab.audit.server_attacks import CATALOGUE
from secagg.cli import main

EXAMPLES = Path(__file__).resolve().parents[5] / "examples"
CLASSES = {
    "1 profile downgrade",
    "2 HE mode downgrade",
    "3 tiny cohort",
    "4 SecAgg+ threshold",
    "5 graph and colluder assumption",
    "6 differencing across rounds",
    "7 server input crashes the client",
    "key substitution",
    "Sybils off the roster",
    "split views at the n_C bound",
    "config split",
    "replay from an older session",
    "both-shares request",
    "8 privacy of the face methods",
    "9 invalid keys",
}


def audit(config: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["audit", "server", "--config", str(EXAMPLES / config), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_default_policy_holds_against_every_attack(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = audit("client.toml", capsys)
    attacks = report["attacks"]
    assert isinstance(attacks, list)
    assert {a["class"] for a in attacks} == CLASSES == {a.cls for a in CATALOGUE}
    assert all(set(a) == {"id", "class", "succeeded", "evidence"} for a in attacks)
    assert report["succeeded"] == 0 and code == 0, [a for a in attacks if a["succeeded"]]


def test_a_weak_policy_lets_the_attacks_it_opts_into_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same catalogue can succeed: opt-ins and a tiny k_min give the victim away."""
    code, report = audit("client-weak-policy.toml", capsys)
    attacks = report["attacks"]
    assert isinstance(attacks, list)
    won = {a["id"] for a in attacks if a["succeeded"]}
    assert won == {
        "profile-downgrade",
        "he-plain-key-holder",
        "cohort-of-two",
        "cohort-of-three",
        "secagg-plus-off-by-one",
        "sparse-graph-assumption",
        "sybils-off-roster",
        "split-view-at-bound",
    }
    assert report["succeeded"] == len(won) and code == 1


def test_the_face_and_key_rows_can_succeed_and_say_why() -> None:
    """ε = 64 on S gives membership away (AUC ≫ 0.75); the low-order key is refused."""
    from clients.lab.audit.server_attacks import run
    from protocol.policy import ClientPolicy

    rows = {r["id"]: r for r in run(ClientPolicy(), 10, fedface_epsilon=64.0)["attacks"]}  # type: ignore[union-attr, index]
    assert rows["fedface-moment-membership"]["succeeded"] is True
    assert "inferred" in str(rows["fedface-moment-membership"]["evidence"])
    assert rows["low-order-peer-key"]["succeeded"] is False
    assert "invalid key" in str(rows["low-order-peer-key"]["evidence"])
