"""FedGC: the closed-form corrections against autograd of the regularisers, their effect, and
tiny experiments in the private (FedGC-DPC) and the labelled trusted-aggregator mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clients.lab.experiment import ExperimentConfig, run_experiment
from clients.training.fedgc import (
    TRUST_LABEL,
    client_correction,
    correction_gradient,
    proxy_correction_gradient,
    proxy_regularizer,
    regularizer,
    server_correction,
)


def _tangent(grad: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    return grad - (grad * unit).sum(1, keepdim=True) * unit


def test_server_correction_matches_autograd_of_the_regulariser() -> None:
    torch.manual_seed(0)
    rows = F.normalize(torch.randn(9, 6, dtype=torch.float64), dim=1)
    owners = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    w = rows.clone().requires_grad_(True)
    regularizer(w, owners, s_r=4.0).backward()  # type: ignore[no-untyped-call]
    assert w.grad is not None
    closed = correction_gradient(rows, owners, s_r=4.0).double()
    # Autograd goes through the normalisation: only the tangent part exists on the sphere.
    assert torch.allclose(_tangent(closed, rows), w.grad, atol=1e-6)


def test_same_client_rows_are_not_negatives() -> None:
    """Guard: treating every row as a negative gives another gradient (the test can fail)."""
    torch.manual_seed(1)
    rows = F.normalize(torch.randn(6, 4), dim=1)
    owners = torch.tensor([0, 0, 0, 1, 1, 1])
    everyone = torch.arange(6)  # each row its own client
    assert not torch.allclose(
        correction_gradient(rows, owners, s_r=4.0), correction_gradient(rows, everyone, s_r=4.0)
    )


def test_proxy_correction_matches_autograd() -> None:
    torch.manual_seed(2)
    rows = F.normalize(torch.randn(5, 6, dtype=torch.float64), dim=1)
    centers = F.normalize(torch.randn(3, 6, dtype=torch.float64), dim=1)
    sizes = torch.tensor([4.0, 11.5, 2.0], dtype=torch.float64)
    w = rows.clone().requires_grad_(True)
    proxy_regularizer(w, centers, sizes, s_r=8.0).backward()  # type: ignore[no-untyped-call]
    assert w.grad is not None
    closed = proxy_correction_gradient(rows, centers, sizes, s_r=8.0).double()
    assert torch.allclose(_tangent(closed, rows), w.grad, atol=1e-5)


def test_corrections_push_rows_away_from_other_clients_and_keep_norms() -> None:
    torch.manual_seed(3)
    base = F.normalize(torch.randn(1, 8), dim=1)
    mine = 2.0 * F.normalize(base + 0.2 * torch.randn(3, 8), dim=1)  # norm 2, near `base`
    theirs = F.normalize(base + 0.2 * torch.randn(4, 8), dim=1)

    def closeness(a: torch.Tensor) -> float:
        return float((F.normalize(a, dim=1) @ F.normalize(theirs, dim=1).T).mean())

    moved_mine, moved_theirs = server_correction([mine, theirs], s_r=8.0, step=0.05)
    assert closeness(moved_mine) < closeness(mine)
    assert torch.allclose(moved_mine.norm(dim=1), torch.full((3,), 2.0), atol=1e-5)
    assert moved_theirs.shape == theirs.shape
    proxy = client_correction(mine, base, torch.tensor([4.0]), s_r=8.0, step=0.05)
    assert float((F.normalize(proxy, dim=1) @ base.T).mean()) < float(
        (F.normalize(mine, dim=1) @ base.T).mean()
    )
    unchanged = client_correction(mine, torch.zeros(0, 8), torch.zeros(0), s_r=8.0, step=0.05)
    assert torch.equal(unchanged, mine)


def _tiny(tmp_path: Path, algorithm: str, mode: str) -> dict[str, object]:
    cfg = ExperimentConfig(
        algorithm=algorithm,
        mode=mode,  # type: ignore[arg-type]
        data="synthetic:40:4",
        clients=2,
        rounds=2,
        test_identities=4,
        image_size=(16, 16),
        embedding_dim=16,
        dplc_epsilon=2000.0,
        dplc_bits=1,
        out=str(tmp_path / algorithm),
    )
    return run_experiment(cfg, progress=lambda _: None)


def test_private_fedgc_experiment_reports_its_dp_releases(tmp_path: Path) -> None:
    report = _tiny(tmp_path, "fedgc", "secagg")
    assert "trusted" not in str(report["trust"])
    rounds = report["rounds"]
    assert isinstance(rounds, list)
    for row in rounds:
        assert row["parity_max_abs_error"] <= row["parity_bound"]
        assert set(row["extra"]["dplc_epsilon"]) == {"1", "2"}
        assert "class_embeddings_seen_by_server" not in row["extra"]
    assert rounds[-1]["extra"]["dplc_epsilon"]["1"] == pytest.approx(2000.0)


def test_fedgc_reference_is_labelled_trusted_everywhere(tmp_path: Path) -> None:
    lines: list[str] = []
    cfg = ExperimentConfig(
        algorithm="fedgc-reference",
        mode="plain",
        data="synthetic:16:4",
        clients=2,
        rounds=1,
        test_identities=4,
        image_size=(16, 16),
        embedding_dim=16,
        out=str(tmp_path),
    )
    report = run_experiment(cfg, progress=lines.append)
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["trust"] == TRUST_LABEL and "trusted aggregator" in TRUST_LABEL
    assert written["final"]["extra"]["trust"] == TRUST_LABEL
    assert written["final"]["extra"]["class_embeddings_seen_by_server"] == 12
    assert all(line.startswith("[TRUSTED AGGREGATOR]") for line in lines)
    assert report["final"] == written["final"]


def test_cli_help_labels_the_reference_as_trusted_aggregator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from secagg.cli import main

    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fedgc-reference: the published server-side correction, TRUSTED AGGREGATOR" in text
