"""Session binding: the session id and the exact bytes each party signs.

Session id = SHA-256 over the canonical encoding of the protocol version,
the full round config (which holds the round, cohort, threshold, modulus,
quantisation, graph seed and model hash) and every advertised key in cohort
order. Each client computes it itself; it salts every KDF, is part of every
AEAD's associated data, and of every signature after round 0.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Iterable

from protocol.config import PROTOCOL_VERSION, RoundConfig
from protocol.messages import AdvertiseKeys
from secagg.encoding import Field, encode, encode_list
from secagg.primitives import aead
from secagg.primitives.shamir import SHARE_BYTES


@functools.lru_cache(maxsize=64)
def config_digest(config: RoundConfig) -> bytes:
    """SHA-256 of the canonical config (signed in round 0, before a session id exists).

    Cached: every key signature and graph commitment of a round names it, and
    encoding a config with a large cohort costs ~0.2 ms (n = 100).
    """
    return hashlib.sha256(config.canonical()).digest()


def advertise_fields(
    config: RoundConfig, client: int, c_pk: bytes, s_pk: bytes, graph_commitment: bytes = b""
) -> tuple[Field, ...]:
    """What a client signs in round 0: its keys (and graph commitment) bound to this config."""
    return (
        "advertise-keys",
        PROTOCOL_VERSION,
        config_digest(config),
        client,
        c_pk,
        s_pk,
        graph_commitment,
    )


def session_id(config: RoundConfig, keys: Iterable[AdvertiseKeys]) -> bytes:
    """The session id every party derives from public data."""
    ordered = sorted(keys, key=lambda k: k.client)
    key_fields = [
        encode(k.client, k.c_public, k.s_public, k.signature, k.graph_commitment) for k in ordered
    ]
    return hashlib.sha256(
        encode("session", PROTOCOL_VERSION, config.canonical(), encode_list(key_fields))
    ).digest()


GRAPH_NONCE_BYTES = 32


def graph_commitment(config: RoundConfig, client: int, nonce: bytes) -> bytes:
    """Hash commitment to a client's graph nonce (hiding: the nonce is 256 random bits)."""
    return hashlib.sha256(
        encode("graph-nonce", PROTOCOL_VERSION, config_digest(config), client, nonce)
    ).digest()


def graph_seed(session: bytes, nonces: Iterable[tuple[int, bytes]] = ()) -> bytes:
    """Seed of the SecAgg+ neighbour graph.

    Why a commit-reveal: a seed drawn from the keys alone can be ground by
    whoever advertises last (colluders that see the honest keys first try key
    after key offline until one of them lands next to a target). Every member
    commits to a nonce with its signed keys and reveals it only once U1 is
    fixed, so the seed holds each honest member's nonce, which no one knew
    when the colluders' commitments were fixed. A member that withholds its
    nonce aborts the round, and every retry costs a contribution attempt
    (clients/ledger.py), so aborting is no cheap re-draw either.
    """
    ordered = encode_list(encode(c, n) for c, n in sorted(nonces))
    return hashlib.sha256(encode("neighbour-graph", session, ordered)).digest()


def commitment(session: bytes, owner: int, seed: bytes) -> bytes:
    """Hash commitment to a self-mask seed b (hiding: b is 256 random bits)."""
    return hashlib.sha256(encode("self-mask-commitment", session, owner, seed)).digest()


def commitment_fields(session: bytes, owner: int, value: bytes) -> tuple[Field, ...]:
    """What a client signs with its shares: the commitment in this session."""
    return ("share-keys", session, owner, value)


def survivors_fields(session: bytes, survivors: Iterable[int]) -> tuple[Field, ...]:
    """What a client signs in the consistency round: the survivor set U3."""
    return ("consistency", session, encode(*sorted(survivors)))


def share_aad(session: bytes, sender: int, recipient: int) -> bytes:
    """Associated data of the AES-GCM ciphertext carrying shares sender → recipient."""
    return encode("share-keys", PROTOCOL_VERSION, session, sender, recipient)


_SHARE_LAYOUT = struct.Struct(f">QQ{SHARE_BYTES}s{SHARE_BYTES}s")
#: Bytes of one share ciphertext: fixed, so the server can check sizes without decrypting.
SHARE_CIPHERTEXT_BYTES = _SHARE_LAYOUT.size + aead.OVERHEAD


def share_plaintext(sender: int, recipient: int, key_share: bytes, self_share: bytes) -> bytes:
    """The share ciphertext's content: ids repeated inside, as in Bonawitz et al."""
    return _SHARE_LAYOUT.pack(sender, recipient, key_share, self_share)


def parse_share_plaintext(raw: bytes) -> tuple[int, int, bytes, bytes]:
    """Inverse of :func:`share_plaintext`; raises ValueError on a wrong size."""
    if len(raw) != _SHARE_LAYOUT.size:
        raise ValueError("share plaintext has the wrong size")
    sender, recipient, key_share, self_share = _SHARE_LAYOUT.unpack(raw)
    return int(sender), int(recipient), bytes(key_share), bytes(self_share)
