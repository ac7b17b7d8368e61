"""Request signatures (protocol/request_auth.py, T28/T29) at the codec boundary.

Every field of the signed tuple (session, round, phase, sender, body, nonce)
and every field of every message kind is covered: change one and the
signature fails. Unknown protobuf fields never reach the signed data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from protocol.errors import AuthenticationFailed
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    ConsistencySignature,
    EncryptedShare,
    MaskedInput,
    ShareKeys,
    UnmaskShares,
)
from protocol.request_auth import (
    NONCE_BYTES,
    RequestAuth,
    body_digest,
    masked_digest,
    phase_of,
    sign_message,
    verify_message,
    verify_request,
)
from secagg.primitives.signing import SigningKey
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb

KEY = SigningKey(hashlib.sha256(b"client-7").digest())
OTHER = SigningKey(hashlib.sha256(b"client-8").digest())
SESSION = hashlib.sha256(b"attempt").digest()
NONCE = bytes(range(NONCE_BYTES))

MESSAGES: list[ClientMessage] = [
    AdvertiseKeys(7, 3, b"c" * 32, b"s" * 32, b"g" * 64),
    ShareKeys(
        7, 3, (EncryptedShare(7, 8, b"x" * 90), EncryptedShare(7, 9, b"y" * 90)), b"m" * 32, b""
    ),
    MaskedInput(7, 3, b"\x01\x02\x03" * 100),
    ConsistencySignature(7, 3, b"z" * 64),
    UnmaskShares(7, 3, ((8, b"a" * 64),), ((9, b"b" * 64),)),
    ClientAbort(7, 3, "model hash differs"),
]
IDS = [type(m).__name__ for m in MESSAGES]


def changed(value: Any) -> Any:
    """A different value of the same type."""
    if isinstance(value, bool):
        raise TypeError("no bool fields expected")
    if isinstance(value, int):
        return value + 1
    if isinstance(value, bytes):
        return value[:-1] + bytes([value[-1] ^ 1]) if value else b"\x00"
    if isinstance(value, str):
        return value + "!"
    if isinstance(value, tuple):
        if not value:
            return ((1, b"\x00" * 64),)
        first = value[0]
        if isinstance(first, EncryptedShare):
            return (dataclasses.replace(first, ciphertext=changed(first.ciphertext)), *value[1:])
        owner, share = first
        return ((owner, changed(share)), *value[1:])
    raise TypeError(type(value))


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_signed_request_verifies(msg: ClientMessage) -> None:
    auth = sign_message(KEY, msg, session=SESSION, nonce=NONCE)
    verify_message(KEY.public, auth, msg)


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_every_message_field_is_signed(msg: ClientMessage) -> None:
    auth = sign_message(KEY, msg, session=SESSION, nonce=NONCE)
    for f in dataclasses.fields(msg):
        other = dataclasses.replace(msg, **{f.name: changed(getattr(msg, f.name))})
        with pytest.raises(AuthenticationFailed):
            verify_message(KEY.public, auth, other)


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_session_nonce_signature_and_key_are_bound(msg: ClientMessage) -> None:
    auth = sign_message(KEY, msg, session=SESSION, nonce=NONCE)
    for bad in (
        dataclasses.replace(auth, session=changed(auth.session)),
        dataclasses.replace(auth, nonce=changed(auth.nonce)),
        dataclasses.replace(auth, signature=changed(auth.signature)),
        dataclasses.replace(auth, signature=b""),
        dataclasses.replace(auth, session=auth.session + b"\x00"),
        dataclasses.replace(auth, nonce=auth.nonce[:-1]),
    ):
        with pytest.raises(AuthenticationFailed):
            verify_message(KEY.public, bad, msg)
    with pytest.raises(AuthenticationFailed):
        verify_message(OTHER.public, auth, msg)


def test_phase_round_and_sender_are_bound() -> None:
    msg = MESSAGES[0]
    auth = sign_message(KEY, msg, session=SESSION, nonce=NONCE)
    good = {"round_": msg.round, "phase": phase_of(msg), "sender": msg.client}
    verify_request(KEY.public, auth, body=body_digest(msg), **good)  # type: ignore[arg-type]
    for name, value in (("round_", 4), ("phase", "share"), ("sender", 8)):
        with pytest.raises(AuthenticationFailed):
            verify_request(
                KEY.public,
                auth,
                body=body_digest(msg),
                **{**good, name: value},  # type: ignore[arg-type]
            )


def test_body_digests_differ_across_kinds_and_phases_are_distinct() -> None:
    assert len({body_digest(m) for m in MESSAGES}) == len(MESSAGES)
    assert len({phase_of(m) for m in MESSAGES}) == len(MESSAGES)
    # An abort and a consistency signature with the same bytes are still different bodies.
    assert body_digest(ClientAbort(7, 3, "ab")) != body_digest(ConsistencySignature(7, 3, b"ab"))


def test_masked_digest_needs_only_the_payload_hash() -> None:
    msg = MESSAGES[2]
    assert isinstance(msg, MaskedInput)
    assert body_digest(msg) == masked_digest(7, 3, hashlib.sha256(msg.payload).digest())


@pytest.mark.parametrize("msg", MESSAGES, ids=IDS)
def test_t29_unknown_fields_do_not_reach_the_signed_data(msg: ClientMessage) -> None:
    """Wire roundtrip with unknown fields appended (top level and inside ``auth``)."""
    auth = sign_message(KEY, msg, session=SESSION, nonce=NONCE)
    raw = codec.signed_client_to_proto(msg, auth).SerializeToString()
    unknown = b"\xf8\x07\x2a"  # field 127, varint 42
    auth_with_unknown = b"\x82\x01" + bytes([len(unknown)]) + unknown  # merged into ``auth``
    wire = pb.ClientMessage.FromString(raw + unknown + auth_with_unknown)
    decoded, decoded_auth = codec.client_from_proto(wire), codec.auth_from_proto(wire)
    assert decoded == msg and decoded_auth == auth
    verify_message(KEY.public, decoded_auth, decoded)


def test_unsigned_message_has_no_auth() -> None:
    wire = codec.signed_client_to_proto(MESSAGES[0], None)
    assert codec.auth_from_proto(wire) is None
    assert codec.auth_from_proto(pb.UploadChunk(client=7)) is None
    auth = RequestAuth(SESSION, NONCE, b"s" * 64)
    chunk = pb.UploadChunk(client=7)
    chunk.auth.CopyFrom(codec.auth_to_proto(auth))
    assert codec.auth_from_proto(chunk) == auth
