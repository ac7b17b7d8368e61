"""The one module that imports TenSEAL: typed wrappers around its untyped objects.

Everything here hands plain Python / NumPy values back to the rest of
:mod:`secagg.he`; TenSEAL objects only leave this module inside an
:class:`Engine` or as opaque ``Native`` handles.

Randomness: SEAL draws its own, from its default PRNG (Blake2xb seeded from
``std::random_device``) for the secret key, the encryption noise and the
uniform half of each ciphertext. That is the only randomness secagg.he uses;
none is drawn in Python.

Why a scratch file descriptor: TenSEAL's SEAL binding (``tenseal.sealapi``)
serialises a *seed-compressed* ciphertext (``Serializable<Ciphertext>``, half
the size of a full one) only to a file path, and loads ciphertexts only from a
path. We hand it ``/proc/self/fd/N`` of an anonymous in-memory file
(``memfd_create``); nothing reaches a disk. Platforms without memfd fall back
to a private temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import tenseal as ts
import tenseal.sealapi as seal

from secagg.errors import HEParameterError, OverflowRisk
from secagg.he.params import CkksParams, HEParams
from secagg.he.validate import CiphertextInfo, InvalidCiphertext

#: An untyped TenSEAL / SEAL object.
Native = Any

_HAVE_MEMFD = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


# --------------------------------------------------------------------------- contexts


def new_context(params: HEParams) -> Native:
    """A fresh TenSEAL context with a secret key (symmetric encryption, no Galois keys)."""
    try:
        if isinstance(params, CkksParams):
            ctx = ts.context(
                ts.SCHEME_TYPE.CKKS,
                poly_modulus_degree=params.poly_degree,
                coeff_mod_bit_sizes=list(params.coeff_mod_bits),
                encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
            )
            ctx.global_scale = params.scale
        else:
            ctx = ts.context(
                ts.SCHEME_TYPE.BFV,
                poly_modulus_degree=params.poly_degree,
                plain_modulus=params.plain_modulus,
                coeff_mod_bit_sizes=list(params.coeff_mod_bits),
                encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
            )
    except (ValueError, RuntimeError) as exc:
        raise HEParameterError(f"TenSEAL refused the parameters: {exc}") from exc
    return ctx


def serialize_context(ctx: Native, *, secret: bool) -> bytes:
    """Parameters (+ the secret key iff ``secret``); never public, relin or Galois keys."""
    data = ctx.serialize(
        save_public_key=False,
        save_secret_key=secret,
        save_galois_keys=False,
        save_relin_keys=False,
    )
    return bytes(data)


def load_context(data: bytes) -> Native:
    """Parse serialised context bytes; raises :class:`HEParameterError` on garbage."""
    try:
        return ts.context_from(data)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise HEParameterError("unreadable HE context") from exc


def has_secret_key(ctx: Native) -> bool:
    """True iff the context can decrypt."""
    return bool(ctx.is_private())


def secret_key(ctx: Native) -> Native:
    """The SEAL secret key; TenSEAL raises ``ValueError`` for a public context."""
    return ctx.secret_key().data


def describe_context(ctx: Native) -> tuple[str, int, tuple[int, ...], int, float | None]:
    """(scheme, N, coefficient primes, plain modulus, CKKS scale or None) of a context."""
    parms = ctx.seal_context().data.key_context_data().parms()
    scheme = str(parms.scheme()).rsplit(".", 1)[-1].lower()
    primes = tuple(int(m.value()) for m in parms.coeff_modulus())
    scale: float | None = None
    if scheme == "ckks":
        try:
            scale = float(ctx.global_scale)
        except ValueError:
            scale = None
    degree = int(parms.poly_modulus_degree())
    return scheme, degree, primes, int(parms.plain_modulus().value()), scale


# --------------------------------------------------------------------------- byte transport


@contextmanager
def _scratch() -> Iterator[tuple[str, int]]:
    """(path, fd) of an empty in-memory file, closed (and unlinked) on exit."""
    if _HAVE_MEMFD:
        fd = os.memfd_create("secagg-he", os.MFD_CLOEXEC)
        try:
            yield f"/proc/self/fd/{fd}", fd
        finally:
            os.close(fd)
    else:  # pragma: no cover - non-Linux fallback
        fd, path = tempfile.mkstemp(prefix="secagg-he-")
        try:
            yield path, fd
        finally:
            os.close(fd)
            os.unlink(path)


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def save(obj: Native) -> bytes:
    """SEAL's own serialisation (zstd; seed-compressed for fresh symmetric ciphertexts)."""
    with _scratch() as (path, fd):
        obj.save(path)
        data = _read_all(fd)
    if not data:
        raise HEParameterError("SEAL wrote nothing (no usable scratch file)")
    return data


# --------------------------------------------------------------------------- engine


class Engine:
    """Encoder, evaluator and (with a secret key) encryptor / decryptor for one context."""

    __slots__ = ("_decryptor", "_encoder", "_encryptor", "_evaluator", "_parms_id", "_seal", "ckks")

    def __init__(self, ctx: Native, params: HEParams) -> None:
        self._seal = ctx.seal_context().data
        self.ckks = isinstance(params, CkksParams)
        if self.ckks:
            self._encoder = seal.CKKSEncoder(self._seal)
            # Clients encrypt at the lowest level: only q0 is left, so the ciphertext is as
            # small as the parameters allow (we only ever add; no rescale is needed).
            self._parms_id = self._seal.last_parms_id()
        else:
            self._encoder = seal.BatchEncoder(self._seal)
            self._parms_id = self._seal.first_parms_id()
        self._evaluator = seal.Evaluator(self._seal)
        self._encryptor: Native = None
        self._decryptor: Native = None
        if has_secret_key(ctx):
            sk = secret_key(ctx)
            self._encryptor = seal.Encryptor(self._seal, sk)
            self._decryptor = seal.Decryptor(self._seal, sk)

    @property
    def parms_id(self) -> tuple[int, ...]:
        """SEAL's hash of the parameters at the level client ciphertexts live on."""
        return tuple(int(v) for v in self._parms_id)

    def _require_key(self) -> None:
        if self._encryptor is None:
            raise HEParameterError("this context holds no secret key (a public context)")

    def encrypt_complex(self, slots: np.ndarray, scale: float) -> bytes:
        """One seed-compressed CKKS ciphertext of N/2 complex slots."""
        self._require_key()
        plain = seal.Plaintext()
        try:
            self._encoder.encode(slots.tolist(), self._parms_id, scale, plain)
        except ValueError as exc:  # SEAL: "encoded values are too large"
            raise OverflowRisk(f"SEAL cannot encode these values at this level: {exc}") from exc
        return save(self._encryptor.encrypt_symmetric(plain))

    def encrypt_residues(self, residues: np.ndarray) -> bytes:
        """One seed-compressed BFV ciphertext of N residues in [0, t)."""
        self._require_key()
        plain = seal.Plaintext()
        self._encoder.encode(residues.tolist(), plain)
        return save(self._encryptor.encrypt_symmetric(plain))

    def load(self, blob: bytes) -> Native:
        """SEAL load (SEAL runs its own validity checks); any failure is InvalidCiphertext."""
        ct = seal.Ciphertext()
        try:
            with _scratch() as (path, fd):
                os.write(fd, blob)
                ct.load(self._seal, path)
        except (ValueError, RuntimeError, TypeError, OSError) as exc:
            raise InvalidCiphertext("SEAL rejected the ciphertext") from exc
        return ct

    def info(self, ct: Native) -> CiphertextInfo:
        """The header facts validate.py checks after loading."""
        return CiphertextInfo(
            poly_degree=int(ct.poly_modulus_degree()),
            coeff_modulus_size=int(ct.coeff_modulus_size()),
            size=int(ct.size()),
            is_ntt_form=bool(ct.is_ntt_form()),
            scale=float(ct.scale),
            parms_id=tuple(int(v) for v in ct.parms_id()),
        )

    def add_inplace(self, acc: Native, ct: Native) -> None:
        """acc += ct (ciphertext addition)."""
        self._evaluator.add_inplace(acc, ct)

    def add_residues_inplace(self, acc: Native, residues: np.ndarray) -> None:
        """BFV: acc += N plaintext residues in [0, t); needs no key (the hybrid's mask removal)."""
        if self.ckks:
            raise HEParameterError("adding plaintext residues needs a BFV context")
        plain = seal.Plaintext()
        self._encoder.encode(residues.tolist(), plain)
        self._evaluator.add_plain_inplace(acc, plain)

    def decrypt_complex(self, ct: Native) -> np.ndarray:
        """N/2 complex slots."""
        self._require_key()
        plain = seal.Plaintext()
        self._decryptor.decrypt(ct, plain)
        out: np.ndarray = np.asarray(self._encoder.decode_complex(plain), dtype=np.complex128)
        return out

    def decrypt_residues(self, ct: Native) -> np.ndarray:
        """N residues in [0, t)."""
        self._require_key()
        plain = seal.Plaintext()
        self._decryptor.decrypt(ct, plain)
        out: np.ndarray = np.asarray(self._encoder.decode_uint64(plain), dtype=np.uint64)
        return out

    def noise_budget(self, ct: Native) -> int:
        """BFV invariant noise budget in bits (0 means decryption is already wrong)."""
        self._require_key()
        return int(self._decryptor.invariant_noise_budget(ct))
