"""Transport-level request signatures (security.md §4.1 "per-request authentication", T28).

Every state-changing request (a protocol message submitted, or a masked
vector uploaded) is signed by the client's long-term Ed25519 key, the one the
roster binds to its id, over canonical bytes:

    "secagg/v1/request" ‖ version ‖ session ‖ round ‖ phase ‖ sender ‖ body digest ‖ nonce

- ``session`` is the round attempt, i.e. the fresh 32-byte nonce of the
  ``RoundConfig`` the client received in ``RoundStart`` (the protocol session
  id only exists after round 0, and the config nonce is bound into it);
- ``phase`` is named by the message type; ``round`` and ``sender`` are the
  message's own fields;
- the body digest covers every field of the decoded message (never protobuf
  bytes, which keep unknown fields, M12). A masked input is digested through
  the SHA-256 of its payload, so a server can check the signature on the
  first chunk of an upload, before it reads the rest;
- ``nonce`` is 16 fresh random bytes per attempt of a call (a retry signs
  again), so the server can refuse a replay without refusing a retry. A
  signed upload is also named by it (upload id = its hex), so no byte of the
  first chunk escapes the signature or a framing check.

This is separate from, and in addition to, the signatures the protocol
messages carry themselves (round-0 keys, the commitment, U3): those bind the
protocol; this binds the request to its sender, its round attempt and its
moment. Pure: the nonce is a parameter; no clock, network or randomness here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocol.config import PROTOCOL_VERSION
from protocol.errors import AuthenticationFailed
from protocol.he_messages import AnyClientMessage, HEJoin, HEKeyDelivery, HEUpload
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ConsistencySignature,
    GraphReveal,
    MaskedInput,
    ShareKeys,
    UnmaskShares,
)
from protocol.method_messages import ClusterRelease
from secagg.encoding import Field, digest, encode, encode_list
from secagg.errors import InvalidSignature
from secagg.primitives.signing import SigningKey, sign, verify

DOMAIN = "secagg/v1/request"
NONCE_BYTES = 16
SESSION_BYTES = 32


@dataclass(frozen=True, slots=True)
class RequestAuth:
    """What a signed request carries besides its message."""

    session: bytes  # RoundConfig.nonce of the round attempt
    nonce: bytes  # NONCE_BYTES, fresh per attempt of a call
    signature: bytes  # Ed25519 over request_fields(...)


def phase_of(msg: AnyClientMessage) -> str:
    """The phase a message type belongs to (what the signature names)."""
    match msg:
        case AdvertiseKeys():
            return "advertise"
        case GraphReveal():
            return "graph"
        case ShareKeys():
            return "share"
        case MaskedInput():
            return "masked"
        case ConsistencySignature():
            return "consistency"
        case UnmaskShares():
            return "unmask"
        case ClientAbort():
            return "abort"
        case HEJoin():
            return "he-join"
        case HEKeyDelivery():
            return "he-keys"
        case HEUpload():
            return "he-upload"
        case ClusterRelease():
            return "release"


def masked_digest(client: int, round_: int, payload_sha256: bytes) -> bytes:
    """Body digest of a masked input, from the SHA-256 of its payload."""
    return digest("masked", client, round_, payload_sha256)


def body_digest(msg: AnyClientMessage) -> bytes:
    """SHA-256 over the canonical encoding of every field of ``msg``."""
    match msg:
        case AdvertiseKeys():
            return digest(
                "advertise",
                msg.client,
                msg.round,
                msg.c_public,
                msg.s_public,
                msg.signature,
                msg.graph_commitment,
            )
        case GraphReveal():
            return digest("graph", msg.client, msg.round, msg.nonce)
        case ShareKeys():
            shares = encode_list(encode(s.sender, s.recipient, s.ciphertext) for s in msg.shares)
            return digest(
                "share", msg.client, msg.round, shares, msg.self_mask_commitment, msg.signature
            )
        case MaskedInput():
            return masked_digest(msg.client, msg.round, hashlib.sha256(msg.payload).digest())
        case ConsistencySignature():
            return digest("consistency", msg.client, msg.round, msg.signature)
        case UnmaskShares():
            own = encode_list(encode(o, s) for o, s in msg.self_mask_shares)
            keys = encode_list(encode(o, s) for o, s in msg.key_shares)
            return digest("unmask", msg.client, msg.round, own, keys)
        case ClientAbort():
            return digest("abort", msg.client, msg.round, msg.reason)
        case HEJoin():
            return digest(
                "he-join", msg.client, msg.round, msg.public, msg.signature, msg.model_sha256
            )
        case HEKeyDelivery():
            sealed = encode_list(encode(s.sender, s.recipient, s.ciphertext) for s in msg.sealed)
            return digest("he-keys", msg.client, msg.round, msg.public_context, sealed)
        case HEUpload():
            blobs = hashlib.sha256(encode_list(msg.blobs)).digest()
            return digest("he-upload", msg.client, msg.round, blobs, msg.signature)
        case ClusterRelease():
            return digest("release", msg.canonical())


def request_fields(
    *, session: bytes, round_: int, phase: str, sender: int, body: bytes, nonce: bytes
) -> tuple[Field, ...]:
    """The canonical fields a request signature covers (see the module docstring)."""
    return (DOMAIN, PROTOCOL_VERSION, session, round_, phase, sender, body, nonce)


def sign_request(
    key: SigningKey,
    *,
    session: bytes,
    nonce: bytes,
    round_: int,
    phase: str,
    sender: int,
    body: bytes,
) -> RequestAuth:
    """Sign one request; ``body`` is :func:`body_digest` (or :func:`masked_digest`)."""
    fields = request_fields(
        session=session, round_=round_, phase=phase, sender=sender, body=body, nonce=nonce
    )
    return RequestAuth(session, nonce, sign(key, *fields))


def sign_message(
    key: SigningKey, msg: AnyClientMessage, *, session: bytes, nonce: bytes
) -> RequestAuth:
    """Sign the request that submits ``msg``."""
    return sign_request(
        key,
        session=session,
        nonce=nonce,
        round_=msg.round,
        phase=phase_of(msg),
        sender=msg.client,
        body=body_digest(msg),
    )


def verify_request(
    public: bytes,
    auth: RequestAuth,
    *,
    round_: int,
    phase: str,
    sender: int,
    body: bytes,
) -> None:
    """Raise :class:`AuthenticationFailed` unless ``auth`` signs exactly this request.

    Checks the signature only; whether ``auth.session`` is the running
    attempt and ``auth.nonce`` is fresh is the host's business (it holds the
    state).
    """
    if len(auth.session) != SESSION_BYTES or len(auth.nonce) != NONCE_BYTES:
        raise AuthenticationFailed("malformed request signature (session or nonce length)")
    fields = request_fields(
        session=auth.session, round_=round_, phase=phase, sender=sender, body=body, nonce=auth.nonce
    )
    try:
        verify(public, auth.signature, *fields)
    except InvalidSignature:
        raise AuthenticationFailed(f"bad request signature from client {sender}") from None


def verify_message(public: bytes, auth: RequestAuth, msg: AnyClientMessage) -> None:
    """:func:`verify_request` for the request that submits ``msg``."""
    verify_request(
        public,
        auth,
        round_=msg.round,
        phase=phase_of(msg),
        sender=msg.client,
        body=body_digest(msg),
    )
