"""Double masking modulo any m (the BFV plain modulus t in the hybrid HE mode).

The same construction as :mod:`secagg.masking`, with the same seeds, signs and
dropout recovery, but residues mod m from :func:`prg_residues` instead of
words mod 2^k: client u sends y_u = x_u + PRG_m(b_u) + Σ_{v≠u} σ(u, v)·PRG_m(s_uv)
mod m. Why a prime m: BFV batching needs t prime, and a plaintext slot adds
mod t, so masks added mod t cancel inside the homomorphic sum exactly as they
do in SecAgg's sum mod 2^k.

The server does not subtract masks from a vector it can read; it computes the
correction c = −Σ_{u∈U3} PRG_m(b_u) − Σ σ(u, d)·PRG_m(s_ud) (survivor u, dropped
d) from the recovered seeds, so that Σ_{u∈U3} y_u + c ≡ Σ_{u∈U3} x_u (mod m),
and adds c to the encrypted sum as a plaintext.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from secagg.errors import ParameterError
from secagg.masking import pairwise_sign
from secagg.primitives.prg_mod import prg_accumulate_mod, word_bits


def mask_residues(
    values: np.ndarray,
    *,
    modulus: int,
    me: int,
    self_seed: bytes,
    pair_seeds: Mapping[int, bytes],
) -> np.ndarray:
    """y = values + PRG_m(self) + Σ_v σ(me, v)·PRG_m(s_me,v) mod m, as a new uint64 vector."""
    acc = as_residues(values, modulus)
    prg_accumulate_mod(acc, self_seed, modulus)
    for peer, seed in pair_seeds.items():
        prg_accumulate_mod(acc, seed, modulus, subtract=pairwise_sign(me, peer) < 0)
    return acc


def unmask_correction(
    length: int,
    *,
    modulus: int,
    self_seeds: Iterable[bytes],
    orphaned_pairs: Iterable[tuple[int, int, bytes]],
) -> np.ndarray:
    """c with Σ_{U3} y + c ≡ Σ_{U3} x (mod m).

    ``orphaned_pairs`` holds (survivor, dropped, seed) triples, as for SecAgg.
    """
    word_bits(modulus)  # validates the modulus
    acc = np.zeros(length, dtype=np.uint64)
    for seed in self_seeds:
        prg_accumulate_mod(acc, seed, modulus, subtract=True)
    for survivor, dropped, seed in orphaned_pairs:
        # The survivor added σ(survivor, dropped)·PRG; the correction takes exactly that away.
        prg_accumulate_mod(acc, seed, modulus, subtract=pairwise_sign(survivor, dropped) > 0)
    return acc


def as_residues(values: np.ndarray, modulus: int) -> np.ndarray:
    """A uint64 copy of ``values``, refusing anything outside [0, m) instead of reducing it."""
    word_bits(modulus)
    v = np.asarray(values)
    if v.ndim != 1:
        raise ParameterError("masking takes a 1-D vector")
    if v.size and not np.issubdtype(v.dtype, np.integer):
        raise ParameterError("masking takes integer residues")
    if v.size and (int(v.min()) < 0 or int(v.max()) >= modulus):
        raise ParameterError(f"inputs must lie in [0, {modulus})")
    return v.astype(np.uint64, copy=True)
