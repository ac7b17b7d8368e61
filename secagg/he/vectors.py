"""Whole-vector encryption, the aggregator's sum, and decryption.

Wire format: a flattened vector of D values becomes ⌈D / N⌉ blobs, each one
SEAL-serialised ciphertext (zstd) holding N consecutive values; the last one
is zero-padded. That is as dense as the parameters allow:

- **CKKS**: the N/2 slots are complex, so chunk c puts values
  [cN, cN + N/2) in the real parts and [cN + N/2, (c+1)N) in the imaginary
  parts (addition acts on both independently). Clients encrypt at the lowest
  level (q0 only) with the secret key, so SEAL replaces the uniform half of
  the ciphertext by its 64-byte seed: one polynomial of N words for N values,
  ≈ 8 bytes per value with a 60-bit q0 (≈ 7.2 with 50 bits; zstd gains only
  the unused high bits of each word).
- **BFV**: N batching slots, the same seed compression, ≈ 8 bytes per value.

Sums (from :func:`add_all`) have two polynomials (≈ 16 bytes per value); only
the key holders download them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from secagg.errors import HEParameterError, OverflowRisk, ParameterError
from secagg.he import _native
from secagg.he.context import HEContext
from secagg.he.params import BfvParams, CkksParams, HEParams, check_ckks
from secagg.he.validate import InvalidCiphertext, check_blob, check_ciphertext


def chunk_count(params: HEParams, length: int) -> int:
    """Number of ciphertexts a vector of ``length`` values takes."""
    if not isinstance(length, int) or length < 1:
        raise ParameterError("vector length must be a positive integer")
    return math.ceil(length / params.values_per_ciphertext)


def encrypt(ctx: HEContext, values: np.ndarray) -> list[bytes]:
    """CKKS-encrypt a float vector (flattened) with the secret key; one blob per ciphertext."""
    params = _ckks(ctx)
    x = np.asarray(values, dtype=np.float64).ravel()
    chunks = chunk_count(params, x.size)
    if not np.isfinite(x).all():
        raise ParameterError("input contains NaN or infinity")
    check_ckks(params, clients=1, max_abs=float(np.max(np.abs(x))))
    n = params.values_per_ciphertext
    half = n // 2
    padded = np.zeros(chunks * n, dtype=np.float64)
    padded[: x.size] = x
    blobs = []
    for c in range(chunks):
        block = padded[c * n : (c + 1) * n]
        slots = block[:half] + 1j * block[half:]
        blobs.append(ctx.engine.encrypt_complex(slots, params.scale))
    return blobs


def encrypt_ints(ctx: HEContext, values: np.ndarray) -> list[bytes]:
    """BFV-encrypt signed integers with |x| ≤ (t − 1)/2 (stored as residues mod t)."""
    params = _bfv(ctx)
    x = np.asarray(values)
    if x.size and not np.issubdtype(x.dtype, np.integer):
        raise ParameterError("encrypt_ints takes an integer array")
    x = x.astype(np.int64, copy=False).ravel()
    if x.size and int(np.max(np.abs(x))) > params.max_centred:
        raise OverflowRisk(f"|x| must be ≤ (t − 1)/2 = {params.max_centred}")
    return _encrypt_residues(ctx, params, np.mod(x, params.plain_modulus).astype(np.uint64))


def encrypt_residues(ctx: HEContext, residues: np.ndarray) -> list[bytes]:
    """BFV-encrypt values already reduced mod t, e.g. inputs carrying pairwise masks mod t."""
    params = _bfv(ctx)
    r = np.asarray(residues)
    if r.size and not np.issubdtype(r.dtype, np.integer):
        raise ParameterError("encrypt_residues takes an integer array")
    r = r.ravel()
    if r.size and (int(r.min()) < 0 or int(r.max()) >= params.plain_modulus):
        raise ParameterError("residues must lie in [0, t)")
    return _encrypt_residues(ctx, params, r.astype(np.uint64))


class CiphertextSum:
    """The aggregator's running sum; one client's whole upload is added at a time.

    :meth:`add` checks every blob of the upload (size and header, SEAL's load,
    parameters) before touching the sum, so a bad upload raises
    :class:`InvalidCiphertext` and leaves the sum as it was. Memory stays at
    one accumulator plus one upload, however many clients there are.
    """

    __slots__ = ("_acc", "_ctx", "_expected", "_length", "count")

    def __init__(self, ctx: HEContext, *, length: int) -> None:
        self._ctx = ctx
        self._expected = chunk_count(ctx.params, length)
        self._length = length
        self._acc: list[_native.Native] = []
        self.count = 0

    def add(self, blobs: Sequence[bytes]) -> None:
        """Validate one client's upload, then add it."""
        if len(blobs) != self._expected:
            raise InvalidCiphertext(f"{len(blobs)} ciphertexts, expected {self._expected}")
        loaded = [_load_checked(self._ctx, blob, fresh=True) for blob in blobs]
        if self.count == 0:
            self._acc = loaded
        else:
            for acc, ct in zip(self._acc, loaded, strict=True):
                self._ctx.engine.add_inplace(acc, ct)
        self.count += 1

    def add_residues(self, residues: np.ndarray) -> None:
        """BFV: add a public plaintext vector in [0, t) to the sum, slot by slot, mod t.

        The hybrid mode's mask removal: the server adds the correction it computed
        from the recovered mask seeds. Plaintext addition leaves the noise as it was.
        """
        params = _bfv(self._ctx)
        if self.count == 0:
            raise ParameterError("no upload has been added")
        r = np.asarray(residues)
        if r.shape != (self._length,) or (r.size and not np.issubdtype(r.dtype, np.integer)):
            raise ParameterError(f"need {self._length} integer residues")
        if int(r.min()) < 0 or int(r.max()) >= params.plain_modulus:
            raise ParameterError("residues must lie in [0, t)")
        n = params.values_per_ciphertext
        padded = np.zeros(self._expected * n, dtype=np.uint64)
        padded[: r.size] = r
        for c, acc in enumerate(self._acc):
            self._ctx.engine.add_residues_inplace(acc, padded[c * n : (c + 1) * n])

    def result(self) -> list[bytes]:
        """The serialised sum (two polynomials per ciphertext)."""
        if self.count == 0:
            raise ParameterError("no upload has been added")
        return [_native.save(ct) for ct in self._acc]


def add_all(
    public_ctx: HEContext, blobs_per_client: Sequence[Sequence[bytes]], *, length: int
) -> list[bytes]:
    """Σ over clients of their uploads, as the aggregator computes it (no key needed).

    Raises :class:`InvalidCiphertext` with ``client`` set to the index of the
    first upload that fails a check; the caller drops that client and retries.
    """
    if not blobs_per_client:
        raise ParameterError("no uploads to add")
    total = CiphertextSum(public_ctx, length=length)
    for i, blobs in enumerate(blobs_per_client):
        try:
            total.add(blobs)
        except InvalidCiphertext as exc:
            raise InvalidCiphertext(str(exc), client=i) from exc
    return total.result()


def decrypt(ctx: HEContext, blobs: Sequence[bytes], length: int) -> np.ndarray:
    """CKKS: the first ``length`` values of a sum (float64); run check_aggregate on it next."""
    params = _ckks(ctx)
    cts = _load_sum(ctx, blobs, length)
    half = params.values_per_ciphertext // 2
    out = np.empty(len(cts) * params.values_per_ciphertext, dtype=np.float64)
    for c, ct in enumerate(cts):
        slots = ctx.engine.decrypt_complex(ct)
        base = c * params.values_per_ciphertext
        out[base : base + half] = slots.real
        out[base + half : base + 2 * half] = slots.imag
    return out[:length]


def decrypt_ints(ctx: HEContext, blobs: Sequence[bytes], length: int) -> np.ndarray:
    """BFV: the first ``length`` values of a sum, centred into [−(t−1)/2, (t−1)/2] (int64)."""
    params = _bfv(ctx)
    cts = _load_sum(ctx, blobs, length)
    residues = np.concatenate([ctx.engine.decrypt_residues(ct) for ct in cts])[:length]
    out = residues.astype(np.int64)
    out[residues > params.max_centred] -= params.plain_modulus
    return out


# --------------------------------------------------------------------------- helpers


def _ckks(ctx: HEContext) -> CkksParams:
    if not isinstance(ctx.params, CkksParams):
        raise HEParameterError("this operation needs a CKKS context")
    return ctx.params


def _bfv(ctx: HEContext) -> BfvParams:
    if not isinstance(ctx.params, BfvParams):
        raise HEParameterError("this operation needs a BFV context")
    return ctx.params


def _encrypt_residues(ctx: HEContext, params: BfvParams, r: np.ndarray) -> list[bytes]:
    n = params.values_per_ciphertext
    chunks = chunk_count(params, r.size)
    padded = np.zeros(chunks * n, dtype=np.uint64)
    padded[: r.size] = r
    return [ctx.engine.encrypt_residues(padded[c * n : (c + 1) * n]) for c in range(chunks)]


def _load_checked(ctx: HEContext, blob: bytes, *, fresh: bool) -> _native.Native:
    check_blob(ctx.params, blob, fresh=fresh)
    ct = ctx.engine.load(bytes(blob))
    check_ciphertext(ctx.params, ctx.engine.info(ct), parms_id=ctx.engine.parms_id)
    return ct


def _load_sum(ctx: HEContext, blobs: Sequence[bytes], length: int) -> list[_native.Native]:
    if not ctx.has_secret_key:
        raise HEParameterError("decryption needs the secret context")
    expected = chunk_count(ctx.params, length)
    if len(blobs) != expected:
        raise InvalidCiphertext(f"{len(blobs)} ciphertexts, expected {expected}")
    return [_load_checked(ctx, blob, fresh=False) for blob in blobs]
