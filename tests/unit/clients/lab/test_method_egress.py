"""T62 for the in-memory methods: only masked updates and accounted DPLC releases leave.

Everything a FedGC-DPC or PrivacyFace client hands out is intercepted: the
vectors that go into the aggregation (masked in secagg mode) and each DPLC
release. No row of any client's private head, as held when it was sent, may
appear in them, and every release must have its accountant entry. The same
scan finds rows planted in an upload, so it can fail. (FedAvg over the gRPC
daemons: tests/integration/test_embedding_egress.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clients.lab import experiment as experiment_module
from clients.lab import method_hooks as methods_module
from clients.lab.experiment import ExperimentConfig, run_experiment


def leaked(rows: list[np.ndarray], blobs: list[np.ndarray]) -> int:
    """Rows whose first 8 values appear (float32 or float64) in any intercepted array."""
    data = [b.astype("<f8").tobytes() for b in blobs] + [b.astype("<f4").tobytes() for b in blobs]
    count = 0
    for row in rows:
        patterns = [row[:8].astype("<f8").tobytes(), row[:8].astype("<f4").tobytes()]
        if any(p in d for d in data for p in patterns):
            count += 1
    return count


def intercept(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"uploads": [], "released": [], "rows": []}
    original_aggregate = experiment_module.aggregate
    original_release = methods_module._DplcReleases.release

    def aggregate(mode: str, updates: Any, weights: Any, **kwargs: Any) -> Any:
        seen["uploads"].extend(np.asarray(v, dtype=np.float64) for v in updates.values())
        return original_aggregate(mode, updates, weights, **kwargs)

    def release(self: Any, client: int, head: torch.nn.Module, round_: int) -> None:
        rows = head.weight.detach().cpu().numpy().astype(np.float64)
        seen["rows"].extend(rows.copy())
        original_release(self, client, head, round_)
        clusters = self._pending[client]
        seen["released"] += [clusters.centers, clusters.sizes, clusters.radii]

    monkeypatch.setattr(experiment_module, "aggregate", aggregate)
    monkeypatch.setattr(methods_module._DplcReleases, "release", release)
    return seen


@pytest.mark.parametrize("algorithm", ["fedgc", "privacyface"])
def test_t62_only_masked_updates_and_accounted_releases_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str
) -> None:
    seen = intercept(monkeypatch)
    cfg = ExperimentConfig(
        algorithm=algorithm,
        mode="secagg",
        data="synthetic:40:4",
        clients=2,
        rounds=2,
        test_identities=4,
        image_size=(16, 16),
        embedding_dim=16,
        dplc_epsilon=2000.0,
        dplc_bits=1,
        out=str(tmp_path),
    )
    report = run_experiment(cfg, progress=lambda _: None)
    assert len(seen["uploads"]) == 4 and len(seen["rows"]) > 0  # 2 clients × 2 rounds
    assert leaked(seen["rows"], seen["uploads"]) == 0
    assert leaked(seen["rows"], [r for r in seen["released"] if r.size]) == 0
    releases = len(seen["released"]) // 3
    assert releases == 4
    rounds = report["rounds"]
    assert isinstance(rounds, list)
    for row in rounds:  # every release has its accountant entry, per client
        assert set(row["extra"]["dplc_epsilon"]) == {"1", "2"}
        assert all(e > 0 for e in row["extra"]["dplc_epsilon"].values())


def test_t62_the_scan_finds_rows_planted_in_an_upload() -> None:
    rows = [np.linspace(-0.5, 0.5, 16) + k for k in range(3)]
    upload = np.concatenate([np.zeros(100), rows[1], np.zeros(10)])
    assert leaked(rows, [upload]) == 1
    assert leaked(rows, [upload.astype(np.float32).astype(np.float64)]) == 1
