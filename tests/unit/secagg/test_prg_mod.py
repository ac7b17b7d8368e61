"""The mod-m mask PRG: known answers, exact uniformity (no modulo bias), accumulation."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.masking import as_residues, mask_input, remove_masks
from secagg.primitives.prg import (
    MAX_MODULUS,
    acceptance_limit,
    prg_accumulate_mod,
    prg_residues,
    word_bits,
)
from tests.vectors.loader import Vector, load, params

T = 1_073_692_673  # the BFV_8192 plain modulus
SEED = hashlib.sha256(b"prg-mod-test").digest()


@pytest.mark.parametrize("vector", params("prg_mod"))
def test_prg_residues_known_answer(vector: Vector) -> None:
    got = prg_residues(vector.bytes_of("seed"), 64, vector.int_of("modulus"))
    assert [int(v) for v in got] == vector.ints_of("residues")


def test_known_answers_exercise_rejection_for_both_word_sizes() -> None:
    rejected = {
        word_bits(v.int_of("modulus")) for v in load("prg_mod") if v.int_of("rejected_words")
    }
    assert rejected == {32, 64}


def test_prefix_stable_across_lengths() -> None:
    """Element i depends only on the seed: a longer draw extends a shorter one."""
    long = prg_residues(SEED, 5000, 3 << 30)
    for n in (0, 1, 63, 64, 65, 4999):
        assert np.array_equal(prg_residues(SEED, n, 3 << 30), long[:n])


def test_no_modulo_bias() -> None:
    """m = 3·2^30: naive w mod m puts half the mass below 2^30; rejection puts exactly a third."""
    m = 3 << 30
    r = prg_residues(SEED, 60_000, m)
    share = float(np.mean(r < (1 << 30)))
    sigma = (1 / 3 * 2 / 3 / r.size) ** 0.5
    assert abs(share - 1 / 3) < 5 * sigma  # naive reduction would give 0.5, ≈ 80σ away
    assert acceptance_limit(m) == m  # ⌊2^32 / m⌋ = 1: words ≥ m are rejected


def test_uniform_mod_t_chi_square() -> None:
    """64 equal-width bins over [0, t): chi-square with 63 dof stays below its 0.999 quantile."""
    r = prg_residues(SEED, 200_000, T)
    assert int(r.max()) < T
    counts = np.bincount((r * 64 // T).astype(np.int64), minlength=64)
    expected = r.size / 64
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 103.4  # χ²(63) 0.999 quantile


def test_small_modulus_every_residue_equally_often() -> None:
    r = prg_residues(SEED, 70_000, 7)
    counts = np.bincount(r.astype(np.int64), minlength=7)
    assert counts.size == 7
    chi2 = float(np.sum((counts - 10_000) ** 2 / 10_000))
    assert chi2 < 22.5  # χ²(6) 0.999 quantile


def test_accumulate_adds_and_subtracts_mod_m() -> None:
    for m in (7, T, (1 << 61) - 1, MAX_MODULUS):
        base = prg_residues(hashlib.sha256(str(m).encode()).digest(), 1000, m)
        acc = base.copy()
        prg_accumulate_mod(acc, SEED, m)
        mask = prg_residues(SEED, 1000, m)
        expected = (base.astype(object) + mask.astype(object)) % m
        assert [int(v) for v in acc] == list(expected)
        prg_accumulate_mod(acc, SEED, m, subtract=True)
        assert np.array_equal(acc, base)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ParameterError, match="32 bytes"):
        prg_residues(b"short", 4, T)
    for m in (0, 1, MAX_MODULUS + 1):
        with pytest.raises(ParameterError, match="modulus"):
            prg_residues(SEED, 4, m)
    with pytest.raises(ParameterError, match="length"):
        prg_residues(SEED, -1, T)
    with pytest.raises(ParameterError, match="uint64"):
        prg_accumulate_mod(np.zeros(4, dtype=np.uint32), SEED, T)


def test_masks_hide_the_input_and_the_correction_removes_them() -> None:
    """One client alone: y ≠ x, and adding the self-mask correction gives x back."""
    x = np.arange(1000, dtype=np.uint64)
    self_seed = hashlib.sha256(b"self").digest()
    y = mask_input(x, modulus=T, me=1, self_seed=self_seed, pair_seeds={})
    assert int(np.sum(y == x)) < 5
    zeros = np.zeros(1000, dtype=np.uint64)
    c = remove_masks(zeros, modulus=T, self_seeds=[self_seed], orphaned_pairs=[])
    assert np.array_equal((y + c) % np.uint64(T), x)


def test_masking_refuses_values_outside_the_modulus() -> None:
    with pytest.raises(ParameterError, match=r"\[0, 7\)"):
        as_residues(np.array([0, 7]), 7)
    with pytest.raises(ParameterError, match="integer"):
        as_residues(np.array([0.5]), 7)
    with pytest.raises(ParameterError, match="1-D"):
        as_residues(np.zeros((2, 2), dtype=np.int64), 7)
