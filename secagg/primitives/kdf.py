"""HKDF-SHA256 (RFC 5869) with explicit labels and session binding.

Every derived key names its purpose (a label from :data:`LABELS`) and the
session it belongs to, so a key derived for one purpose or session can never
be confused with another (domain separation).
"""

from __future__ import annotations

from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from secagg.encoding import Field, encode
from secagg.errors import ParameterError

PROTOCOL_ID = "secagg/v1"

#: The only labels the system derives keys for. A typo is an error, not a new domain.
LABELS = frozenset(
    {
        "pairwise-mask",  # PRG seed of the pairwise mask s_uv
        "self-mask",  # PRG seed expansion of the self mask b_u
        "share-encryption",  # AES-GCM key for Shamir shares sent u -> v
        "he-key-transport",  # AES-GCM key for the HE secret key sent u -> v
        "test",  # reserved for known-answer tests
    }
)


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """Plain RFC 5869 HKDF-SHA256. Use :func:`derive_key` in protocol code."""
    if not 1 <= length <= 255 * 32:
        raise ParameterError("HKDF output length must be in [1, 8160]")
    out = HKDF(ikm, length, salt, SHA256, num_keys=1, context=info)
    assert isinstance(out, bytes)
    return out


def derive_key(
    secret: bytes,
    *,
    label: str,
    session_id: bytes,
    context: tuple[Field, ...] = (),
    length: int = 32,
) -> bytes:
    """Derive a key for ``label`` bound to ``session_id`` and ``context``.

    ``salt`` is the session id; ``info`` is the canonical encoding of
    (protocol id, label, *context), e.g. context = (round, src, dst).
    """
    if label not in LABELS:
        raise ParameterError(f"unknown KDF label {label!r}")
    if len(session_id) != 32:
        raise ParameterError("session id must be 32 bytes")
    if len(secret) < 16:
        raise ParameterError("input key material must be at least 16 bytes")
    info = encode(PROTOCOL_ID, label, *context)
    return hkdf_sha256(secret, salt=session_id, info=info, length=length)
