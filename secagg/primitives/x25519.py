"""X25519 key pairs and Diffie-Hellman agreement (RFC 7748), from pycryptodome.

Keys travel as raw 32-byte strings. Agreement with a low-order point (which
would give an all-zero secret) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement

from secagg.errors import InvalidKey
from secagg.rng import RandomSource

KEY_BYTES = 32


@dataclass(frozen=True, slots=True, repr=False)
class X25519KeyPair:
    """A key pair as raw bytes; ``repr`` never prints the private half."""

    private: bytes
    public: bytes

    def __repr__(self) -> str:
        return f"X25519KeyPair(public={self.public.hex()[:16]}…)"


def _identity(z: bytes) -> bytes:
    return z


def x25519_public(private: bytes) -> bytes:
    """The public key for a raw 32-byte private key."""
    if len(private) != KEY_BYTES:
        raise InvalidKey("X25519 private key must be 32 bytes")
    key = import_x25519_private_key(private)
    raw = key.public_key().export_key(format="raw")
    assert isinstance(raw, bytes)
    return raw


def x25519_keypair(rng: RandomSource) -> X25519KeyPair:
    """A fresh key pair from 32 bytes of ``rng``."""
    private = rng.random_bytes(KEY_BYTES)
    return X25519KeyPair(private=private, public=x25519_public(private))


def x25519_shared(private: bytes, peer_public: bytes) -> bytes:
    """Raw 32-byte shared secret. Feed it to :func:`derive_key`, never use it directly.

    Raises :class:`InvalidKey` for a malformed or low-order peer key.
    """
    if len(private) != KEY_BYTES or len(peer_public) != KEY_BYTES:
        raise InvalidKey("X25519 keys must be 32 bytes")
    try:
        priv = import_x25519_private_key(private)
        pub = import_x25519_public_key(peer_public)
        shared = key_agreement(static_priv=priv, static_pub=pub, kdf=_identity)
    except ValueError as exc:  # pycryptodome rejects invalid and low-order points
        raise InvalidKey("invalid X25519 public key") from exc
    assert isinstance(shared, bytes)
    if shared == bytes(KEY_BYTES):
        raise InvalidKey("invalid X25519 public key")
    return shared
