"""Mask PRG: AES-256-CTR keystream of a full 256-bit seed, read as residues.

Two rings, one keystream (key = seed, counter block from zero):

* mod 2^k (SecAgg's ring): element ``i`` is the ``i``-th little-endian word
  of the keystream (word width = the smallest of 8/16/32/64 bits that holds
  ``k``), reduced mod 2^k. Reducing a uniform word mod a power of two that
  divides its range keeps it uniform. :func:`prg_words`,
  :func:`prg_accumulate_many`, :func:`reduce_mod`.
* mod any m (the BFV plain modulus t of the hybrid HE mode): 32- or 64-bit
  words, rejection sampled (definition below :data:`MAX_MODULUS`).
  :func:`prg_residues`, :func:`prg_accumulate_mod`.

The two word rules differ for small powers of two (m = 2 reads 32-bit words
in the second, 8-bit words in the first), and both are pinned by
known-answer vectors, so the caller names the ring: ``bits`` or ``modulus``.

Every seed must be used for exactly one vector: seeds come from HKDF with a
per-purpose label and the session id, so two masks never share a keystream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from Crypto.Cipher import AES

from secagg.errors import ParameterError

SEED_BYTES = 32
#: Keystream bytes per AES call and per accumulation chunk: 256 KiB stays in L2.
CHUNK_BYTES = 1 << 18
_BLOCKS = CHUNK_BYTES // 16
_INDEX = np.arange(_BLOCKS, dtype=np.uint64)


class _Counters:
    """A reusable buffer of CTR counter blocks T_j (128-bit big-endian, high word 0)."""

    def __init__(self) -> None:
        self._blocks = np.zeros((_BLOCKS, 2), dtype=">u8")
        self._low = np.empty(_BLOCKS, dtype=np.uint64)

    def run(self, first: int, count: int) -> memoryview:
        """The bytes of T_first … T_(first+count−1), ``count`` ≤ the buffer's blocks."""
        np.add(_INDEX[:count], np.uint64(first), out=self._low[:count])
        self._blocks[:count, 1] = self._low[:count]
        return self._blocks[:count].data.cast("B")


class Keystream:
    """The AES-256-CTR keystream of a seed, read front to back in pieces of any size.

    CTR mode by its definition (NIST SP 800-38A §6.5): output block j is
    AES_K(T_j) with T_j = j as a 128-bit big-endian counter from zero, which
    is exactly pycryptodome's ``MODE_CTR`` with ``nonce=b""`` and
    ``initial_value=0`` (the tests check byte equality). We encrypt a buffer
    of counter blocks with pycryptodome's ECB mode because its AES-NI ECB path
    runs about twice as fast as its CTR mode here (3.7 vs 1.9 GB/s), and mask
    expansion is the client's largest cost.
    """

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ParameterError("PRG seed must be 32 bytes")
        self._ecb = AES.new(seed, AES.MODE_ECB)
        self._counters = _Counters()
        self._next_block = 0
        self._spare = np.empty(0, dtype=np.uint8)  # the unread tail of the last block

    def read_into(self, out: np.ndarray) -> None:
        """Overwrite the bytes of the contiguous array ``out`` with the next keystream bytes."""
        if not out.flags.c_contiguous:
            raise ParameterError("keystream output must be a contiguous array")
        raw = out.reshape(-1).view(np.uint8)
        pos = min(self._spare.size, raw.size)
        raw[:pos] = self._spare[:pos]
        self._spare = self._spare[pos:]
        while raw.size - pos >= 16:
            blocks = min(_BLOCKS, (raw.size - pos) // 16)
            self._encrypt_counters(blocks, raw[pos : pos + 16 * blocks])
            pos += 16 * blocks
        if pos < raw.size:  # a partial block: keep what is left of it for the next read
            block = np.empty(16, dtype=np.uint8)
            self._encrypt_counters(1, block)
            rest = raw.size - pos
            raw[pos:] = block[:rest]
            self._spare = block[rest:]

    def _encrypt_counters(self, blocks: int, into: np.ndarray) -> None:
        self._ecb.encrypt(self._counters.run(self._next_block, blocks), output=into.data)
        self._next_block += blocks


def word_dtype(bits: int) -> np.dtype[np.unsignedinteger]:
    """The narrowest unsigned dtype that holds residues mod 2^bits."""
    if not 1 <= bits <= 64:
        raise ParameterError("modulus bits must be in [1, 64]")
    for width, dtype in ((8, np.uint8), (16, np.uint16), (32, np.uint32)):
        if bits <= width:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def modulus_mask(bits: int) -> np.unsignedinteger:
    """2^bits − 1 in the word dtype of ``bits``."""
    dtype = word_dtype(bits)
    return dtype.type((1 << bits) - 1)


def keystream_into(seed: bytes, out: np.ndarray) -> None:
    """Fill ``out`` with raw AES-256-CTR keystream (the benchmarks' physical reference)."""
    Keystream(seed).read_into(out)


def keystream(seed: bytes, nbytes: int) -> bytes:
    """``nbytes`` of raw AES-256-CTR keystream."""
    out = np.empty(nbytes, dtype=np.uint8)
    keystream_into(seed, out)
    return out.tobytes()


def prg_words(seed: bytes, length: int, bits: int) -> np.ndarray:
    """``length`` residues mod 2^bits, in the word dtype of ``bits``."""
    if length < 0:
        raise ParameterError("length must be non-negative")
    dtype = word_dtype(bits)
    out = np.empty(length, dtype=dtype)
    keystream_into(seed, out)
    if bits < dtype.itemsize * 8:
        np.bitwise_and(out, modulus_mask(bits), out=out)
    return out


def prg_accumulate(acc: np.ndarray, seed: bytes, bits: int, *, subtract: bool = False) -> None:
    """``acc ±= PRG(seed)`` modulo 2^(word width), in place (see :func:`prg_accumulate_many`)."""
    prg_accumulate_many(acc, [(seed, subtract)], bits)


def prg_accumulate_many(acc: np.ndarray, streams: Sequence[tuple[bytes, bool]], bits: int) -> None:
    """``acc ±= PRG(seed)`` for every ``(seed, subtract)``, modulo 2^(word width), in place.

    The result is reduced mod 2^bits only by :func:`reduce_mod`; since 2^bits
    divides the word range, reducing once at the end is exact. One pass over
    ``acc``, chunk by chunk: each chunk stays in cache while every seed's
    keystream is added to it, and the counter blocks, the same for every
    key, are built once per chunk.
    """
    dtype = word_dtype(bits)
    if acc.dtype != dtype or acc.ndim != 1 or not acc.flags.c_contiguous:
        raise ParameterError(f"accumulator must be a contiguous 1-D {dtype} array")
    for seed, _ in streams:
        if len(seed) != SEED_BYTES:
            raise ParameterError("PRG seed must be 32 bytes")
    ciphers = [(AES.new(seed, AES.MODE_ECB), subtract) for seed, subtract in streams]
    counters = _Counters()
    keystream = np.empty(_BLOCKS * 16, dtype=np.uint8)
    step = keystream.size // dtype.itemsize
    words = keystream.view(dtype)
    for start in range(0, acc.size, step):
        stop = min(start + step, acc.size)
        width = stop - start
        blocks = -(-width * dtype.itemsize // 16)  # the last chunk may end mid-block
        plain = counters.run(start * dtype.itemsize // 16, blocks)
        chunk = acc[start:stop]
        for cipher, subtract in ciphers:
            cipher.encrypt(plain, output=keystream[: blocks * 16].data)
            (np.subtract if subtract else np.add)(chunk, words[:width], out=chunk)


def reduce_mod(acc: np.ndarray, bits: int) -> np.ndarray:
    """Reduce ``acc`` mod 2^bits in place and return it."""
    if bits < acc.dtype.itemsize * 8:
        np.bitwise_and(acc, modulus_mask(bits), out=acc)
    return acc


# ---------------------------------------------------------------- mod any m

# Definition (the known-answer vectors are computed from it, not from this
# code): the AES-256-CTR keystream of the 32-byte seed (key = seed, counter
# block starting at zero, as above) is read as
# little-endian words of W = 32 bits when m ≤ 2^32, else 64 bits. A word w is
# accepted iff w < L = ⌊2^W / m⌋·m and then yields w mod m; element i of the
# output is the i-th accepted word. Each residue class has exactly ⌊2^W / m⌋
# accepted preimages, so a uniform keystream gives exactly uniform residues (no
# modulo bias). Rejection is rare for the moduli we use (t ≈ 2^30 with 32-bit
# words: 4.6·10^-5) and below 1/2 for any m.
#
# Same rule as the 2^k PRG: every seed masks exactly one vector.

#: Largest modulus: residues fit uint64 with room for one addition before reducing.
MAX_MODULUS = 1 << 62


def word_bits(modulus: int) -> int:
    """W: 32-bit keystream words for m ≤ 2^32, 64-bit words above."""
    _check_modulus(modulus)
    return 32 if modulus <= 1 << 32 else 64


def acceptance_limit(modulus: int) -> int:
    """L = ⌊2^W / m⌋·m: words at or above L are rejected."""
    width = word_bits(modulus)
    return ((1 << width) // modulus) * modulus


def prg_residues(seed: bytes, length: int, modulus: int) -> np.ndarray:
    """``length`` residues uniform in [0, m) from ``seed`` (uint64), by the definition above."""
    if len(seed) != SEED_BYTES:
        raise ParameterError("PRG seed must be 32 bytes")
    if not isinstance(length, int) or length < 0:
        raise ParameterError("length must be a non-negative integer")
    width = word_bits(modulus)
    limit = acceptance_limit(modulus)
    dtype = np.dtype("<u4") if width == 32 else np.dtype("<u8")
    everything = limit == 1 << width  # m divides 2^W: no word is rejected
    m = dtype.type(modulus) if modulus < 1 << width else None  # None: m = 2^W, w mod m = w
    accept = limit / float(1 << width)  # > 1/2
    stream = Keystream(seed)
    out = np.empty(length, dtype=np.uint64)
    filled = 0
    while filled < length:
        want = length - filled
        draw = int(want / accept * 1.001) + 64  # one pass almost always suffices
        words = np.empty(draw, dtype=dtype)
        stream.read_into(words)
        kept = words if everything else words[words < dtype.type(limit)]
        take = kept[:want]
        out[filled : filled + take.size] = take if m is None else np.remainder(take, m)
        filled += take.size
    return out


def prg_accumulate_mod(
    acc: np.ndarray, seed: bytes, modulus: int, *, subtract: bool = False
) -> None:
    """``acc ±= PRG_m(seed) mod m`` in place; ``acc`` is a uint64 vector of residues in [0, m)."""
    if acc.dtype != np.uint64 or acc.ndim != 1 or not acc.flags.c_contiguous:
        raise ParameterError("accumulator must be a contiguous 1-D uint64 array")
    mask = prg_residues(seed, acc.size, modulus)
    m = np.uint64(modulus)
    # Branch-free reduction on uint64 (values < m ≤ 2^62): a difference that wrapped below
    # zero is huge, so the smaller of "d" and "d ∓ m" is always the residue in [0, m).
    if subtract:
        np.subtract(acc, mask, out=acc)  # acc − r, or acc − r + 2^64 if it wrapped
        np.minimum(acc, acc + m, out=acc)  # + m wraps back exactly when acc − r < 0
    else:
        np.add(acc, mask, out=acc)  # < 2m: no overflow
        np.minimum(acc, acc - m, out=acc)  # − m wraps (huge) exactly when acc < m


def _check_modulus(modulus: int) -> None:
    if isinstance(modulus, bool) or not isinstance(modulus, int):
        raise ParameterError("modulus must be an integer")
    if not 2 <= modulus <= MAX_MODULUS:
        raise ParameterError(f"modulus must be in [2, 2^62], got {modulus}")
