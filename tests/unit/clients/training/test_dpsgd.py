"""Opacus DP-SGD in local training: BatchNorm fixed, per-sample clipping, per-client ε."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.validators import ModuleValidator

from clients.lab.experiment import ExperimentConfig, run_experiment
from clients.training.data import synthetic_faces
from clients.training.dpsgd import ClientAccountant, DpSgdConfig, dp_backbone, train_local_dp
from clients.training.evaluate import load_checkpoint
from clients.training.flatten import flatten, spec_of
from clients.training.heads import margin_head
from clients.training.models import build_backbone
from clients.training.train import TrainConfig
from secagg.errors import ParameterError


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return dp_backbone(build_backbone("small-cnn", embedding_dim=8, in_channels=1, image_size=16))


def test_fixed_backbone_has_no_batchnorm_and_passes_the_validator() -> None:
    raw = build_backbone("small-cnn", embedding_dim=8, in_channels=1, image_size=16)
    assert ModuleValidator.validate(raw, strict=False)  # BatchNorm is refused as built
    fixed = _model()
    assert ModuleValidator.validate(fixed, strict=False) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fixed.modules())


def test_per_sample_clipping_bounds_the_step() -> None:
    """Full batch (q = 1), no momentum or decay, ~no noise: ‖Δθ‖ ≤ lr·C."""
    data = synthetic_faces(identities=2, images_per_identity=4, seed=0, size=16, channels=1)
    backbone = _model()
    head = margin_head("cosface", 8, 2)
    spec = spec_of(backbone)
    before = flatten(backbone, spec)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.5, momentum=0.0, weight_decay=0.0)
    clip = 1e-3
    dp = DpSgdConfig(noise_multiplier=1e-9, max_grad_norm=clip)
    accountant = ClientAccountant(1e-5)
    result = train_local_dp(backbone, head, data, cfg, dp, accountant, device=torch.device("cpu"))
    step = float(np.linalg.norm(flatten(backbone, spec) - before))
    assert result.steps == 1
    assert 0 < step <= cfg.lr * clip * 1.001
    # Opacus' hooks are gone: the shared backbone object is used again by the next client.
    assert not any(hasattr(p, "grad_sample") for p in backbone.parameters())


def test_accountant_composes_every_step_across_rounds() -> None:
    ledger = ClientAccountant(1e-5)
    reference = RDPAccountant()
    for _ in range(2):
        ledger.start_round()
        for _ in range(5):
            ledger.step(1.1, 0.25)
            reference.step(noise_multiplier=1.1, sample_rate=0.25)
        assert ledger.round_epsilon() <= ledger.epsilon()
    assert ledger.epsilon() == pytest.approx(reference.get_epsilon(1e-5))
    assert ledger.round_epsilon() < ledger.epsilon()


def test_bad_dp_settings_are_refused() -> None:
    with pytest.raises(ParameterError):
        DpSgdConfig(noise_multiplier=0.0)
    with pytest.raises(ParameterError):
        ExperimentConfig(algorithm="fedface", dp_sgd_noise=1.0)


def test_dp_sgd_experiment_reports_epsilon_per_client_per_round(tmp_path: Path) -> None:
    cfg = ExperimentConfig(
        algorithm="fedavg",
        mode="secagg",
        data="synthetic:16:4",
        clients=2,
        rounds=2,
        test_identities=4,
        image_size=(16, 16),
        embedding_dim=16,
        dp_sgd_noise=1.0,
        out=str(tmp_path),
    )
    report = run_experiment(cfg, progress=lambda _: None)
    rounds = report["rounds"]
    assert isinstance(rounds, list)
    first, second = (row["extra"] for row in rounds)
    assert set(first["dp_sgd_epsilon"]) == {"1", "2"}
    for k in ("1", "2"):
        assert first["dp_sgd_epsilon"][k] == pytest.approx(first["dp_sgd_epsilon_round"][k])
        assert second["dp_sgd_epsilon"][k] > first["dp_sgd_epsilon"][k] > 0
    assert rounds[-1]["parity_max_abs_error"] <= rounds[-1]["parity_bound"]
    model, meta = load_checkpoint(Path(str(report["checkpoint"])), "cpu")  # GroupNorm rebuilt
    assert meta["norm"] == "groupnorm" and model(torch.zeros(1, 1, 16, 16)).shape == (1, 16)
