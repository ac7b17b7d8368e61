"""Mask PRG against its physical limit, the raw AES-256-CTR keystream (group "prg")."""

from __future__ import annotations

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from secagg.primitives.prg import keystream_into, prg_accumulate, prg_words

DIM = 1_000_000


@pytest.mark.benchmark(group="prg")
def test_raw_aes_ctr_keystream(benchmark: BenchmarkFixture, seed: bytes) -> None:
    out = np.empty(DIM, dtype=np.uint32)
    benchmark(keystream_into, seed, out)


@pytest.mark.benchmark(group="prg")
@pytest.mark.parametrize("bits", [16, 23, 32, 64])
def test_prg_words(benchmark: BenchmarkFixture, seed: bytes, bits: int) -> None:
    words = benchmark(prg_words, seed, DIM, bits)
    assert words.size == DIM


@pytest.mark.benchmark(group="prg")
def test_prg_accumulate(benchmark: BenchmarkFixture, seed: bytes) -> None:
    acc = np.zeros(DIM, dtype=np.uint32)
    benchmark(prg_accumulate, acc, seed, 23)
