"""Mask PRG: AES-256-CTR keystream of a full 256-bit seed, read as residues mod 2^k.

The seed is the AES key; the counter block starts at zero. Element ``i`` of
the stream is the ``i``-th little-endian word of the keystream (word width =
the smallest of 8/16/32/64 bits that holds ``k``), reduced mod 2^k. Reducing
a uniform word mod a power of two that divides its range keeps it uniform.

Every seed must be used for exactly one vector: seeds come from HKDF with a
per-purpose label and the session id, so two masks never share a keystream.
"""

from __future__ import annotations

import numpy as np
from Crypto.Cipher import AES
from Crypto.Cipher._mode_ctr import CtrMode

from secagg.errors import ParameterError

SEED_BYTES = 32
#: Words per keystream chunk when accumulating: 256 KiB of uint32 stays in L2.
CHUNK_WORDS = 1 << 16
_ZEROS = bytes(CHUNK_WORDS * 8)


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


def _cipher(seed: bytes) -> CtrMode:
    if len(seed) != SEED_BYTES:
        raise ParameterError("PRG seed must be 32 bytes")
    return AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0)


def keystream_into(seed: bytes, out: np.ndarray) -> None:
    """Fill ``out`` with raw AES-256-CTR keystream (the benchmarks' physical reference).

    Encrypts a cached block of zeros chunk by chunk straight into ``out``.
    """
    cipher = _cipher(seed)
    raw = out.reshape(-1).view(np.uint8).data
    step = len(_ZEROS)
    for start in range(0, len(raw), step):
        stop = min(start + step, len(raw))
        cipher.encrypt(_ZEROS[: stop - start], output=raw[start:stop])


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
    """``acc ±= PRG(seed)`` modulo 2^(word width), in place, chunk by chunk.

    The result is reduced mod 2^bits only by :func:`reduce_mod`; since 2^bits
    divides the word range, reducing once at the end is exact. Chunking keeps
    the keystream in cache, so expansion and accumulation cost one pass.
    """
    dtype = word_dtype(bits)
    if acc.dtype != dtype or acc.ndim != 1 or not acc.flags.c_contiguous:
        raise ParameterError(f"accumulator must be a contiguous 1-D {dtype} array")
    cipher = _cipher(seed)
    step = CHUNK_WORDS
    buf = np.empty(step, dtype=dtype)
    view = buf.view(np.uint8).data
    op = np.subtract if subtract else np.add
    n = acc.size
    for start in range(0, n, step):
        stop = min(start + step, n)
        width = stop - start
        if width == step:
            cipher.encrypt(_ZEROS[: buf.nbytes], output=view)
            op(acc[start:stop], buf, out=acc[start:stop])
        else:  # the last, shorter chunk
            tail = buf[:width]
            cipher.encrypt(_ZEROS[: tail.nbytes], output=tail.view(np.uint8).data)
            op(acc[start:stop], tail, out=acc[start:stop])


def reduce_mod(acc: np.ndarray, bits: int) -> np.ndarray:
    """Reduce ``acc`` mod 2^bits in place and return it."""
    if bits < acc.dtype.itemsize * 8:
        np.bitwise_and(acc, modulus_mask(bits), out=acc)
    return acc
