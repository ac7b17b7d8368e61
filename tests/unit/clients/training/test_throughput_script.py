"""The GPU throughput script runs (tiny settings, CPU) and reports what it measured."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_throughput_script_reports_images_per_second() -> None:
    path = Path(__file__).resolve().parents[4] / "benchmarks" / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("train_throughput", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_throughput"] = module
    spec.loader.exec_module(module)
    result = module.measure(
        backbone="small-cnn",
        batch_size=4,
        steps=2,
        warmup=1,
        image_size=32,
        classes=10,
        device="cpu",
    )
    assert result["images_per_s"] > 0 and result["steps"] == 2 and result["device"] == "cpu"
