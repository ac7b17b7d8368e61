"""`secagg simulate --mode bfv-masked` and `secagg bench he --masked` run the real hybrid round."""

from __future__ import annotations

import json

import pytest

from secagg.cli import main


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_simulate_bfv_masked_with_dropouts(capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_json(
        capsys, "simulate", "--mode", "bfv-masked", "--clients", "7", "--dim", "50",
        "--drop", "masked:1,unmask:1",
    )  # fmt: skip
    assert summary["completed"] is True and summary["exact_sum"] is True
    dropped = summary["dropped"]
    assert isinstance(dropped, dict) and {k: len(v) for k, v in dropped.items()} == {
        "masked": 1,
        "unmask": 1,
    }
    survivors = summary["survivors"]
    assert isinstance(survivors, list) and len(survivors) == 6
    error, bound = summary["max_abs_error_vs_weighted_mean"], summary["quantisation_bound"]
    assert isinstance(error, float) and isinstance(bound, float) and 0 < error <= bound


def test_bench_he_masked_reports_the_real_round(capsys: pytest.CaptureFixture[str]) -> None:
    row = run_json(
        capsys, "bench", "he", "--scheme", "bfv", "--masked", "--clients", "3", "--dim", "100"
    )
    assert row["impl"] == "secagg.he_masked" and row["exact_sum"] is True
    for key in ("encrypt_s", "bytes_per_param", "aggregate_s", "unmask_s", "decrypt_s"):
        value = row[key]
        assert isinstance(value, float) and value > 0
    error = row["max_abs_error"]
    assert isinstance(error, float) and error < 2.0 / (int(str(row["levels"])) - 1)


def test_masked_needs_bfv(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "he", "--scheme", "ckks", "--masked", "--clients", "3", "--dim", "10"]
    assert main(argv) == 2
    assert "--masked needs --scheme bfv" in capsys.readouterr().err
