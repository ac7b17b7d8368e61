"""A small `secagg demo` end to end: processes, mTLS, report fields and parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregator.demo_grpc import DemoOptions, run

pytestmark = pytest.mark.integration


def test_small_demo_writes_a_report_with_parity(tmp_path: Path) -> None:
    report = run(DemoOptions(clients=3, rounds=2, dim=500, out=tmp_path), progress=lambda _: None)
    written = json.loads((Path(report["run_dir"]) / "report.json").read_text())
    assert written["transport"] == "grpc+mtls" and written["profile"] == "active"
    assert [r["round"] for r in written["rounds"] if r["completed"]] == [0, 1]
    assert all(r["survivors"] == [1, 2, 3] for r in written["rounds"])
    assert written["parity"]["ok"] is True
    assert 0 <= written["parity"]["max_abs_error"] <= written["parity"]["bound"]


def test_demo_with_a_killed_client_recovers(tmp_path: Path) -> None:
    report = run(
        DemoOptions(clients=4, rounds=2, dim=500, out=tmp_path, phase_timeout_s=4.0),
        progress=lambda _: None,
    )
    rounds = [r for r in report["rounds"] if r["completed"]]
    assert report["killed"] == [4]
    assert rounds[1]["survivors"] == [1, 2, 3]  # killed before its masked input in round 1
    assert report["parity"]["ok"] is True


def test_demo_writes_real_png_plots_and_a_markdown_report(tmp_path: Path) -> None:
    report = run(DemoOptions(clients=3, rounds=2, dim=200, out=tmp_path), progress=lambda _: None)
    run_dir = Path(report["run_dir"])
    assert len(report["plots"]) == 3
    for plot in report["plots"]:
        data = Path(plot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    markdown = (run_dir / "report.md").read_text()
    assert "Parity with plaintext FedAvg" in markdown and "time_per_round.png" in markdown
