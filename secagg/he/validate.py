"""Ciphertext hygiene: what the aggregator checks before and after deserialising.

TenSEAL / SEAL accept too much on their own (security.md M7): an empty blob
deserialises, a ciphertext under another key with the same parameters is
accepted and decrypts to garbage, and many bit flips pass silently. So:

1. **Before deserialising** (:func:`check_blob`, pure Python, cheap, safe to
   fuzz): non-empty; a SEAL 4.x header (magic, header size, declared size =
   blob length, no compression other than zstd or none); and a total size
   inside the exact range the parameters allow. A client's ciphertext is
   seed-compressed, so it holds one polynomial of N·L coefficients (L = data
   primes); uniform coefficients modulo a prime of b bits cannot compress
   below b − 1 bits each, and the serialisation adds < 1 KiB. Sums hold two
   polynomials.
2. **After deserialising** (:func:`check_ciphertext`): SEAL's own validity
   check has run inside the load; we then require the exact parameter hash
   (``parms_id``, which pins N, every prime and the level), two polynomials,
   the NTT form the scheme uses, and for CKKS the exact scale.
3. **After decrypting** (:func:`check_aggregate`): the sum must be finite and
   inside the bound the inputs allow (n·max|x| per coordinate, optionally an
   L2 bound). A ciphertext under a foreign key decrypts to residues of the
   size of the modulus in every slot (≈1e7 for CKKS at q0 ≈ 2^60, Δ = 2^40;
   uniform mod t for BFV) and fails it. So do bit flips that SEAL's load lets
   through: CKKS ciphertexts are stored in NTT form, so changing any stored
   word changes every coefficient by a residue of the size of q0; in BFV's
   coefficient form a change below the noise margin is rounded away (the sum
   stays exact) and a larger one scrambles every slot, batching being an NTT
   mod t. Measured, 300 random 1–8-bit flips each: CKKS 63 rejected by the
   load, 237 caught, none silent; BFV 63 rejected, 197 caught, 40 harmless.
   Transport integrity is still the client's signature over the ciphertext
   digest (protocol layer, T53); no check here limits what a key-holding
   client encrypts in the first place.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from secagg.errors import SecAggError
from secagg.he.params import CkksParams, HEParams, data_primes

SEAL_MAGIC = 0xA15E
SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compr, reserved, size
SEAL_MAJOR = 4
_COMPR_NONE, _COMPR_ZSTD = 0, 2
#: Room for SEAL's ciphertext fields (parms_id, sizes, scale, seed info) and zstd framing.
_OVERHEAD = 1024


class InvalidCiphertext(SecAggError):
    """A ciphertext or a decrypted aggregate failed a check; ``client`` says whose, if known."""

    def __init__(self, detail: str = "invalid ciphertext", *, client: int | None = None) -> None:
        super().__init__(detail if client is None else f"client {client}: {detail}")
        self.client = client


@dataclass(frozen=True, slots=True)
class CiphertextInfo:
    """The facts about a loaded ciphertext that :func:`check_ciphertext` checks."""

    poly_degree: int
    coeff_modulus_size: int
    size: int
    is_ntt_form: bool
    scale: float
    parms_id: tuple[int, ...]


def blob_bounds(params: HEParams, *, fresh: bool) -> tuple[int, int]:
    """[min, max] bytes of a serialised ciphertext: fresh (seeded, 1 polynomial) or a sum (2)."""
    primes = data_primes(params)
    polys = 1 if fresh else 2
    n = params.poly_degree
    low = polys * n * sum(p.bit_length() - 1 for p in primes) // 8
    high = SEAL_HEADER.size + polys * n * len(primes) * 8 + _OVERHEAD
    return low, high


def check_blob(params: HEParams, blob: bytes, *, fresh: bool) -> None:
    """Refuse, before any parsing by SEAL, a blob that cannot be a valid ciphertext."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise InvalidCiphertext("ciphertext must be bytes")
    if len(blob) == 0:
        raise InvalidCiphertext("empty ciphertext")
    if len(blob) < SEAL_HEADER.size:
        raise InvalidCiphertext("truncated ciphertext header")
    magic, header_size, major, _minor, compr, reserved, size = SEAL_HEADER.unpack_from(blob)
    if magic != SEAL_MAGIC or header_size != SEAL_HEADER.size or major != SEAL_MAJOR:
        raise InvalidCiphertext("not a SEAL 4.x serialisation")
    if compr not in (_COMPR_NONE, _COMPR_ZSTD) or reserved != 0:
        raise InvalidCiphertext("unexpected SEAL compression mode or header field")
    if size != len(blob):
        raise InvalidCiphertext("declared size differs from the blob length")
    low, high = blob_bounds(params, fresh=fresh)
    if not low <= len(blob) <= high:
        raise InvalidCiphertext(
            f"{len(blob)} bytes is outside [{low}, {high}] for these parameters"
        )


def check_ciphertext(params: HEParams, info: CiphertextInfo, *, parms_id: tuple[int, ...]) -> None:
    """Refuse a loaded ciphertext whose parameters, level, size or scale are not ours."""
    if info.parms_id != parms_id:
        raise InvalidCiphertext("foreign parameters or wrong level (parms_id mismatch)")
    if info.poly_degree != params.poly_degree:
        raise InvalidCiphertext("wrong polynomial degree (slot count)")
    if info.coeff_modulus_size != len(data_primes(params)):
        raise InvalidCiphertext("wrong number of coefficient-modulus primes")
    if info.size != 2:
        raise InvalidCiphertext(f"ciphertext has {info.size} polynomials, expected 2")
    ckks = isinstance(params, CkksParams)
    if info.is_ntt_form != ckks:
        raise InvalidCiphertext("wrong NTT form for the scheme")
    expected_scale = params.scale if isinstance(params, CkksParams) else 1.0
    if info.scale != expected_scale:
        raise InvalidCiphertext(f"scale {info.scale!r} differs from {expected_scale!r}")


def check_aggregate(
    values: np.ndarray,
    *,
    clients: int,
    max_abs: float,
    l2_bound: float | None = None,
    atol: float = 1e-6,
) -> None:
    """Refuse a decrypted sum that the inputs could not have produced.

    Every coordinate must be finite with |Σ| ≤ clients·max_abs + atol (atol covers
    CKKS noise, N2); with ``l2_bound`` (e.g. clients × the clients' L2 clip) the
    whole vector must satisfy ‖Σ‖₂ ≤ l2_bound + atol. For BFV a foreign-key sum
    is uniform mod t, so one coordinate passes with probability 2·n·max|x|/t and
    a D-vector with that probability to the power D.
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).all():
        raise InvalidCiphertext("decrypted aggregate is not finite")
    if v.size == 0:
        return
    peak = float(np.max(np.abs(v)))
    limit = clients * max_abs + atol
    if peak > limit:
        raise InvalidCiphertext(
            f"decrypted aggregate reaches {peak:.6g} > {limit:.6g}: a ciphertext was under "
            "another key, corrupted, or out of range"
        )
    if l2_bound is not None:
        norm = float(np.linalg.norm(v))
        if not math.isfinite(norm) or norm > l2_bound + atol:
            raise InvalidCiphertext(f"decrypted aggregate has L2 norm {norm:.6g} > {l2_bound:.6g}")
