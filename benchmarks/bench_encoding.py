"""Quantise + pack one 1M-parameter update (16-bit levels, 23-bit modulus: N=100)."""

from __future__ import annotations

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from secagg.packing import pack, unpack
from secagg.quantization import Quantizer, quantize
from secagg.rng import DeterministicRandomSource

DIM = 1_000_000
BITS = 23


@pytest.fixture
def update(rng: DeterministicRandomSource) -> np.ndarray:
    return np.frombuffer(rng.random_bytes(8 * DIM), dtype="<u8") / 2.0**64 * 2 - 1


@pytest.mark.benchmark(group="encoding")
def test_quantize(
    benchmark: BenchmarkFixture, update: np.ndarray, rng: DeterministicRandomSource
) -> None:
    benchmark(quantize, update, Quantizer(1.0, 1 << 16), rng=rng)


@pytest.mark.benchmark(group="encoding")
def test_pack(
    benchmark: BenchmarkFixture, update: np.ndarray, rng: DeterministicRandomSource
) -> None:
    levels = quantize(update, Quantizer(1.0, 1 << 16), rng=rng)
    packed = benchmark(pack, levels, BITS)
    assert len(packed) == (DIM * BITS + 7) // 8


@pytest.mark.benchmark(group="encoding")
def test_unpack(
    benchmark: BenchmarkFixture, update: np.ndarray, rng: DeterministicRandomSource
) -> None:
    levels = quantize(update, Quantizer(1.0, 1 << 16), rng=rng)
    packed = pack(levels, BITS)
    out = benchmark(unpack, packed, DIM, BITS)
    assert np.array_equal(out, levels)
