"""Double masking (Bonawitz et al. 2017): the arithmetic on integer vectors.

A client u sends y_u = x_u + PRG(b_u) + Σ_{v≠u} σ(u, v)·PRG(s_uv) mod 2^k,
with σ(u, v) = +1 if u < v and −1 otherwise, so every pairwise mask appears
once with each sign and cancels in the sum. The server later removes the
self masks of survivors and the pairwise masks survivors shared with
dropped clients. Seeds are derived with HKDF bound to the session id, so
masks from different sessions, rounds or pairs never coincide.

The same construction works modulo any m (the hybrid HE mode masks mod the
BFV plain modulus t, since a BFV plaintext slot adds mod t): every function
takes the ring as ``bits=k`` (mod 2^k, SecAgg's PRG words, in place on the
narrowest word) or ``modulus=m`` (residues in uint64, the rejection-sampled
PRG of :mod:`secagg.primitives.prg`). The two PRGs read the keystream
differently and both are pinned by known-answer vectors, so the keyword
names the ring rather than a bare integer. In the hybrid the server cannot
subtract from the encrypted sum: it takes the masks off a zero vector
(:func:`remove_masks` of zeros) and adds that correction as a plaintext.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from secagg.errors import ParameterError
from secagg.primitives.kdf import derive_key
from secagg.primitives.prg import (
    prg_accumulate_many,
    prg_accumulate_mod,
    reduce_mod,
    word_bits,
    word_dtype,
)

#: (seed, subtract) for every PRG stream one vector gets.
Streams = list[tuple[bytes, bool]]


def pairwise_seed(shared_secret: bytes, *, session_id: bytes, u: int, v: int) -> bytes:
    """PRG seed of the pairwise mask between clients u and v (symmetric in u, v)."""
    if u == v:
        raise ParameterError("a client has no pairwise mask with itself")
    lo, hi = min(u, v), max(u, v)
    return derive_key(shared_secret, label="pairwise-mask", session_id=session_id, context=(lo, hi))


def self_mask_seed(b: bytes, *, session_id: bytes, owner: int) -> bytes:
    """PRG seed of client ``owner``'s self mask, from its secret b_u."""
    return derive_key(b, label="self-mask", session_id=session_id, context=(owner,))


def pairwise_sign(u: int, v: int) -> int:
    """σ(u, v): +1 when u < v, −1 when u > v."""
    if u == v:
        raise ParameterError("a client has no pairwise mask with itself")
    return 1 if u < v else -1


def mask_input(
    values: np.ndarray,
    *,
    me: int,
    self_seed: bytes,
    pair_seeds: Mapping[int, bytes],
    bits: int | None = None,
    modulus: int | None = None,
) -> np.ndarray:
    """y = values + PRG(self) + Σ_v σ(me, v)·PRG(s_me,v), mod 2^bits or mod ``modulus``.

    A new array (the word dtype of ``bits``, or uint64 residues); ``values``
    outside [0, 2^bits) or [0, m) are refused, not reduced.
    """
    streams: Streams = [(self_seed, False)]
    streams += [(seed, pairwise_sign(me, peer) < 0) for peer, seed in pair_seeds.items()]
    if modulus is not None:
        _only_one(bits, modulus)
        acc = as_residues(values, modulus)
        return _accumulate_residues(acc, streams, modulus)
    if bits is None:
        raise ParameterError("give the ring: bits or modulus")
    dtype = word_dtype(bits)
    v = np.asarray(values)
    if v.ndim != 1:
        raise ParameterError("mask_input takes a 1-D vector")
    if v.size and (v.min() < 0 or (bits < 64 and int(v.max()) >> bits)):
        raise ParameterError(f"inputs must lie in [0, 2^{bits})")
    acc = v.astype(dtype, copy=True)
    prg_accumulate_many(acc, streams, bits)
    return reduce_mod(acc, bits)


def remove_masks(
    total: np.ndarray,
    *,
    self_seeds: Iterable[bytes],
    orphaned_pairs: Iterable[tuple[int, int, bytes]],
    bits: int | None = None,
    modulus: int | None = None,
) -> np.ndarray:
    """Strip survivors' self masks and the masks they share with dropped clients.

    ``orphaned_pairs`` holds (survivor, dropped, seed) triples. Works in place
    on ``total`` (the sum of survivors' y: words mod 2^bits, or uint64
    residues mod m) and returns it. Of a zero vector it returns the
    correction c with Σ_{U3} y + c ≡ Σ_{U3} x.
    """
    streams: Streams = [(seed, True) for seed in self_seeds]
    # The survivor added σ(survivor, dropped)·PRG; undo exactly that.
    streams += [
        (seed, pairwise_sign(survivor, dropped) > 0) for survivor, dropped, seed in orphaned_pairs
    ]
    if modulus is not None:
        _only_one(bits, modulus)
        word_bits(modulus)  # validates the modulus even with no stream to remove
        return _accumulate_residues(total, streams, modulus)
    if bits is None:
        raise ParameterError("give the ring: bits or modulus")
    if total.dtype != word_dtype(bits):
        raise ParameterError("sum has the wrong dtype for these modulus bits")
    prg_accumulate_many(total, streams, bits)
    return reduce_mod(total, bits)


def add_into(total: np.ndarray, y: np.ndarray, bits: int) -> None:
    """total += y mod 2^(word width); call :func:`reduce_mod` before reading."""
    if total.dtype != y.dtype or total.shape != y.shape:
        raise ParameterError("masked vectors must have the same length and dtype")
    np.add(total, y, out=total)


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


def _accumulate_residues(acc: np.ndarray, streams: Streams, modulus: int) -> np.ndarray:
    for seed, subtract in streams:
        prg_accumulate_mod(acc, seed, modulus, subtract=subtract)
    return acc


def _only_one(bits: int | None, modulus: int | None) -> None:
    if bits is not None and modulus is not None:
        raise ParameterError("give the ring once: bits or modulus, not both")
