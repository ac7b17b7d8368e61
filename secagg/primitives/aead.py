"""AES-256-GCM with mandatory associated data and one opaque error.

The associated data is a required keyword: callers must decide what the
ciphertext is bound to (session, round, sender, receiver, phase). Every
failure raises :class:`DecryptionError` without saying why.
"""

from __future__ import annotations

from Crypto.Cipher import AES

from secagg.errors import DecryptionError, ParameterError
from secagg.rng import RandomSource

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES


def seal(key: bytes, plaintext: bytes, *, aad: bytes, rng: RandomSource) -> bytes:
    """Encrypt: returns nonce ‖ ciphertext ‖ tag."""
    return seal_with_nonce(key, plaintext, aad=aad, nonce=rng.random_bytes(NONCE_BYTES))


def seal_with_nonce(key: bytes, plaintext: bytes, *, aad: bytes, nonce: bytes) -> bytes:
    """Deterministic core of :func:`seal` (known-answer tests call this)."""
    if len(key) != KEY_BYTES:
        raise ParameterError("AES-256-GCM key must be 32 bytes")
    if len(nonce) != NONCE_BYTES:
        raise ParameterError("AES-GCM nonce must be 12 bytes")
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(aad)
    ct, tag = cipher.encrypt_and_digest(plaintext)
    return nonce + ct + tag


def open_sealed(key: bytes, sealed: bytes, *, aad: bytes) -> bytes:
    """Decrypt and authenticate; any failure raises :class:`DecryptionError`."""
    if len(key) != KEY_BYTES or len(sealed) < OVERHEAD:
        raise DecryptionError()
    nonce, ct, tag = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:-TAG_BYTES], sealed[-TAG_BYTES:]
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=TAG_BYTES)
    cipher.update(aad)
    try:
        plaintext = cipher.decrypt_and_verify(ct, tag)
    except ValueError:
        raise DecryptionError() from None
    assert isinstance(plaintext, bytes)
    return plaintext
