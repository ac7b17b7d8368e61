"""X25519 key pairs and Diffie-Hellman agreement (RFC 7748), from pycryptodome.

Keys travel as raw 32-byte strings. Agreement with a low-order point (which
would give an all-zero secret) is refused.
"""

from __future__ import annotations

import functools

from Crypto.Protocol.DH import import_x25519_private_key, import_x25519_public_key, key_agreement

from secagg.errors import InvalidKey
from secagg.rng import RandomSource

KEY_BYTES = 32


class X25519KeyPair:
    """A key pair; the parsed private key is kept so agreements cost one scalar product.

    ``repr`` never prints the private half.
    """

    __slots__ = ("_key", "private", "public")

    def __init__(self, private: bytes) -> None:
        if len(private) != KEY_BYTES:
            raise InvalidKey("X25519 private key must be 32 bytes")
        self.private = private
        self._key = import_x25519_private_key(private)
        raw = self._key.public_key().export_key(format="raw")
        assert isinstance(raw, bytes)
        self.public: bytes = raw

    def __repr__(self) -> str:
        return f"X25519KeyPair(public={self.public.hex()[:16]}…)"

    def exchange(self, peer_public: bytes) -> bytes:
        """Raw 32-byte shared secret with ``peer_public``; feed it to a KDF.

        Raises :class:`InvalidKey` for a malformed or low-order peer key.
        """
        if len(peer_public) != KEY_BYTES:
            raise InvalidKey("X25519 keys must be 32 bytes")
        try:
            pub = import_x25519_public_key(peer_public)
            shared = key_agreement(static_priv=self._key, static_pub=pub, kdf=_identity)
        except ValueError as exc:  # pycryptodome rejects invalid and low-order points
            raise InvalidKey("invalid X25519 public key") from exc
        assert isinstance(shared, bytes)
        if shared == bytes(KEY_BYTES):
            raise InvalidKey("invalid X25519 public key")
        return shared


def _identity(z: bytes) -> bytes:
    return z


def x25519_public(private: bytes) -> bytes:
    """The public key for a raw 32-byte private key."""
    return X25519KeyPair(private).public


def x25519_keypair(rng: RandomSource) -> X25519KeyPair:
    """A fresh key pair from 32 bytes of ``rng``."""
    return X25519KeyPair(rng.random_bytes(KEY_BYTES))


def x25519_shared(private: bytes, peer_public: bytes) -> bytes:
    """One-off agreement from raw bytes (see :meth:`X25519KeyPair.exchange`)."""
    return X25519KeyPair(private).exchange(peer_public)


@functools.cache
def _probe() -> X25519KeyPair:
    # A fixed, public scalar: clamping makes every scalar a multiple of the cofactor,
    # so any scalar maps a low-order point to the all-zero secret.
    return X25519KeyPair(bytes(range(1, KEY_BYTES + 1)))


def check_public(public: bytes) -> None:
    """Raise :class:`InvalidKey` unless ``public`` is a usable X25519 key.

    For a party that holds no key pair of its own (the server checks every
    advertised key, so one client with a low-order key cannot spoil a round
    for the others).
    """
    _probe().exchange(public)
