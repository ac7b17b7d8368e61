"""A small `secagg demo` end to end: processes, mTLS, report fields and parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.lab.demo_grpc import DemoOptions, run
from secagg.errors import ParameterError

pytestmark = pytest.mark.integration


def test_small_demo_writes_a_report_with_parity(tmp_path: Path) -> None:
    report = run(
        DemoOptions(clients=3, rounds=2, trainer="synthetic", dim=500, out=tmp_path),
        progress=lambda _: None,
    )
    written = json.loads((Path(report["run_dir"]) / "report.json").read_text())
    assert written["transport"] == "grpc+mtls" and written["profile"] == "active"
    assert [r["round"] for r in written["rounds"] if r["completed"]] == [0, 1]
    assert all(r["survivors"] == [1, 2, 3] for r in written["rounds"])
    assert written["parity"]["ok"] is True
    assert 0 <= written["parity"]["max_abs_error"] <= written["parity"]["bound"]


def test_demo_with_a_killed_client_recovers(tmp_path: Path) -> None:
    report = run(
        DemoOptions(
            clients=4,
            rounds=2,
            trainer="synthetic",
            dim=500,
            out=tmp_path,
            phase_timeout_s=4.0,
        ),
        progress=lambda _: None,
    )
    rounds = [r for r in report["rounds"] if r["completed"]]
    assert report["killed"] == [4]
    assert rounds[1]["survivors"] == [1, 2, 3]  # killed before its masked input in round 1
    assert report["parity"]["ok"] is True


def test_demo_writes_real_png_plots_and_a_markdown_report(tmp_path: Path) -> None:
    report = run(
        DemoOptions(clients=3, rounds=2, trainer="synthetic", dim=200, out=tmp_path),
        progress=lambda _: None,
    )
    run_dir = Path(report["run_dir"])
    assert len(report["plots"]) == 3
    for plot in report["plots"]:
        data = Path(plot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    markdown = (run_dir / "report.md").read_text()
    assert "Parity with plaintext FedAvg" in markdown and "time_per_round.png" in markdown


def test_face_demo_trains_scores_and_keeps_parity(tmp_path: Path) -> None:
    """The default path: daemons train a face CNN; every round is scored and checked."""
    options = DemoOptions(
        clients=3,
        rounds=2,
        data="synthetic:24:6",
        test_identities=6,
        local_epochs=1,
        out=tmp_path,
    )
    report = run(options, progress=lambda _: None)
    written = json.loads((Path(report["run_dir"]) / "report.json").read_text())
    assert written["trainer"] == "face" and written["algorithm"] == "fedavg"
    done = [r for r in written["per_round"] if r["status"] == "completed"]
    assert [r["round"] for r in done] == [0, 1]
    for row in done:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["loss"] > 0
        assert row["train_s"] > 0 and row["crypto_s"] > 0 and row["bytes_up"] > 0
        assert row["parity_max_abs_error"] <= row["parity_bound"]
    assert written["parity"]["ok"] is True and len(written["parity"]["per_round"]) == 2
    # The masked upload is smaller than the fp32 update (a 22-bit modulus per coordinate).
    assert written["bytes_up_per_client_per_round"] < written["fp32_bytes_per_client_per_round"]
    names = {Path(p).name for p in written["plots"]}
    assert "accuracy_per_round.png" in names and "time_per_round.png" in names


def test_demo_refuses_what_the_daemons_do_not_run(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="secagg experiment"):
        DemoOptions(algorithm="fedgc-reference", out=tmp_path)
    with pytest.raises(ParameterError, match="--trainer face"):
        DemoOptions(algorithm="fedface", trainer="synthetic", out=tmp_path)
    assert DemoOptions(algorithm="fedface", out=tmp_path).algorithm == "fedface"
    with pytest.raises(ParameterError, match="mode"):
        DemoOptions(mode="ckks", out=tmp_path)
