"""Ed25519 signatures (RFC 8032, pure mode) over canonical byte strings.

:func:`sign` takes the *fields* to sign and encodes them canonically itself
(:func:`secagg.encoding.encode`), so callers cannot sign ambiguous or
re-serialised bytes by accident.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from Crypto.PublicKey.ECC import EccKey
from Crypto.Signature import eddsa

from secagg.encoding import Field, encode
from secagg.errors import InvalidKey, InvalidSignature
from secagg.rng import RandomSource

SEED_BYTES = 32
PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """An Ed25519 private key as its 32-byte RFC 8032 seed."""

    seed: bytes

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public.hex()[:16]}…)"

    @property
    def public(self) -> bytes:
        """The 32-byte public key."""
        return _public_of(self.seed)


def _public_of(seed: bytes) -> bytes:
    raw = eddsa.import_private_key(seed).public_key().export_key(format="raw")
    assert isinstance(raw, bytes)
    return raw


def signing_key(rng: RandomSource) -> SigningKey:
    """A fresh long-term signing key."""
    return SigningKey(rng.random_bytes(SEED_BYTES))


def sign_raw(key: SigningKey, message: bytes) -> bytes:
    """Sign exact bytes (known-answer tests); protocol code uses :func:`sign`."""
    if len(key.seed) != SEED_BYTES:
        raise InvalidKey("Ed25519 seed must be 32 bytes")
    signer = eddsa.new(eddsa.import_private_key(key.seed), "rfc8032")
    sig = signer.sign(message)
    assert isinstance(sig, bytes)
    return sig


def verify_raw(public: bytes, message: bytes, signature: bytes) -> None:
    """Verify exact bytes; raises :class:`InvalidSignature` on any failure."""
    if len(public) != PUBLIC_BYTES or len(signature) != SIGNATURE_BYTES:
        raise InvalidSignature()
    try:
        verifier = eddsa.new(_public_key(public), "rfc8032")
        verifier.verify(message, signature)
    except ValueError:
        raise InvalidSignature() from None


@functools.lru_cache(maxsize=4096)
def _public_key(public: bytes) -> EccKey:
    """Decoded public keys, cached: a roster's keys verify every request, and decoding
    (a square root in the field) is a fifth of a verification. Public data only."""
    return eddsa.import_public_key(public)


def sign(key: SigningKey, *fields: Field) -> bytes:
    """Sign the canonical encoding of ``fields``."""
    return sign_raw(key, encode(*fields))


def verify(public: bytes, signature: bytes, *fields: Field) -> None:
    """Verify a signature made by :func:`sign` over the same ``fields``."""
    verify_raw(public, encode(*fields), signature)


def check_public_key(public: bytes) -> None:
    """Raise :class:`InvalidKey` unless ``public`` is a valid Ed25519 point."""
    if len(public) != PUBLIC_BYTES:
        raise InvalidKey("Ed25519 public key must be 32 bytes")
    try:
        eddsa.import_public_key(public)  # RFC 8032 §5.1.3 decoding of the raw 32 bytes
    except ValueError as exc:
        raise InvalidKey("invalid Ed25519 public key") from exc
