"""HE wire messages: lossless roundtrips, field parity, canonical and strict decoding."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import AuthenticationFailed, InvalidMessage
from protocol.he_messages import (
    HE_CLIENT_TYPES,
    HE_SERVER_TYPES,
    AnyClientMessage,
    AnyServerMessage,
    HEConfig,
    HEJoin,
    HEKeyBundle,
    HEKeyDelivery,
    HEKeys,
    HEMaskedConfig,
    HEMaskedStart,
    HEResult,
    HEStart,
    HEUpload,
)
from protocol.messages import ClientAbort, EncryptedShare, RoundComplete, ServerAbort
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.wire import parse_any_server_message, parse_client_message, parse_server_message

U64 = st.integers(min_value=0, max_value=2**64 - 1)
BLOB = st.binary(max_size=64)
BLOBS = st.lists(st.binary(max_size=300), max_size=5).map(tuple)
SHARE = st.builds(EncryptedShare, sender=U64, recipient=U64, ciphertext=BLOB)
JOIN = st.builds(HEJoin, client=U64, round=U64, public=BLOB, signature=BLOB, model_sha256=BLOB)


@st.composite
def he_configs(draw: st.DrawFn) -> HEConfig:
    clients = tuple(sorted(draw(st.sets(st.integers(1, 2**40), min_size=1, max_size=6))))
    return HEConfig(
        round=draw(U64),
        clients=clients,
        dim=draw(st.integers(1, 10**6)),
        scheme="ckks",
        key_holder=draw(st.sampled_from(clients)),
        clip=draw(st.floats(0.01, 10.0)),  # within the CKKS sum bound for 6 clients
        max_weight=draw(st.integers(1, 100)),
        levels=draw(st.integers(2, 2**16)),
        nonce=draw(st.binary(min_size=32, max_size=32)),
        model_hash=draw(st.binary(min_size=32, max_size=32)),
        learning_rate=draw(st.floats(1e-6, 10.0)),
    )


@st.composite
def he_masked_configs(draw: st.DrawFn) -> HEMaskedConfig:
    n = draw(st.integers(1, 6))
    clients = tuple(sorted(draw(st.sets(st.integers(1, 2**40), min_size=n, max_size=n))))
    return HEMaskedConfig(
        round=draw(U64),
        clients=clients,
        threshold=draw(st.integers(1, len(clients))),
        dim=draw(st.integers(1, 10**5)),
        key_holder=draw(st.sampled_from(clients)),
        clip=draw(st.floats(0.01, 10.0)),
        levels=draw(st.integers(2, 2**16)),
        max_weight=draw(st.integers(1, 100)),
        nonce=draw(st.binary(min_size=32, max_size=32)),
        model_hash=draw(st.binary(min_size=32, max_size=32)),
        learning_rate=draw(st.floats(1e-6, 10.0)),
    )


CLIENT: dict[type[Any], st.SearchStrategy[Any]] = {
    HEJoin: JOIN,
    HEKeyDelivery: st.builds(
        HEKeyDelivery,
        client=U64,
        round=U64,
        public_context=BLOB,
        sealed=st.lists(SHARE, max_size=4).map(tuple),
    ),
    HEUpload: st.builds(HEUpload, client=U64, round=U64, blobs=BLOBS, signature=BLOB),
}
SERVER: dict[type[Any], st.SearchStrategy[Any]] = {
    HEStart: st.builds(HEStart, config=he_configs()),
    HEMaskedStart: st.builds(HEMaskedStart, config=he_masked_configs()),
    HEKeys: st.builds(HEKeys, joins=st.lists(JOIN, max_size=4).map(tuple)),
    HEKeyBundle: st.builds(HEKeyBundle, sealed=BLOB),
    HEResult: st.builds(HEResult, blobs=BLOBS, contributors=st.lists(U64, max_size=5).map(tuple)),
}


def test_strategies_cover_every_he_message() -> None:
    assert set(CLIENT) == set(HE_CLIENT_TYPES)
    assert set(SERVER) == set(HE_SERVER_TYPES)


@pytest.mark.parametrize(
    "cls",
    [HEConfig, HEMaskedConfig, *HE_CLIENT_TYPES, *HE_SERVER_TYPES],
    ids=lambda c: c.__name__,
)
def test_dataclass_and_wire_fields_match(cls: type[Any]) -> None:
    """A field on one side only would be dropped silently by the codec."""
    wire = getattr(pb, cls.__name__)
    assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in wire.DESCRIPTOR.fields]


@pytest.mark.parametrize("cls", list(CLIENT), ids=lambda c: c.__name__)
@given(data=st.data())
@settings(max_examples=40)
def test_client_roundtrip(cls: type[Any], data: st.DataObject) -> None:
    msg = data.draw(CLIENT[cls])
    raw = codec.client_to_proto(msg).SerializeToString()
    decoded = codec.parse_any_client_message(raw)
    assert type(decoded) is cls and decoded == msg


@pytest.mark.parametrize("cls", list(SERVER), ids=lambda c: c.__name__)
@given(data=st.data())
@settings(max_examples=40, deadline=None)  # the first HEConfig loads TenSEAL
def test_server_roundtrip(cls: type[Any], data: st.DataObject) -> None:
    msg = data.draw(SERVER[cls])
    raw = codec.server_to_proto(msg).SerializeToString()
    decoded = parse_any_server_message(raw)
    assert type(decoded) is cls and decoded == msg
    if isinstance(msg, HEStart | HEMaskedStart):
        assert isinstance(decoded, HEStart | HEMaskedStart)
        assert decoded.config.canonical() == msg.config.canonical()


def test_any_decoders_still_carry_secagg_messages() -> None:
    abort = ClientAbort(3, 1, "model behind")
    assert codec.parse_any_client_message(codec.client_to_proto(abort).SerializeToString()) == abort
    for msg in (RoundComplete(), ServerAbort("x")):
        raw = codec.server_to_proto(msg).SerializeToString()
        assert parse_any_server_message(raw) == msg


def test_secagg_decoders_refuse_he_members() -> None:
    """SecAgg-only hosts get InvalidMessage, never an HE dataclass they cannot handle."""
    join = HEJoin(1, 0, b"k" * 32, b"s" * 64, b"h" * 32)
    with pytest.raises(InvalidMessage, match="unsupported kind"):
        parse_client_message(codec.client_to_proto(join).SerializeToString())
    with pytest.raises(InvalidMessage, match="unsupported kind"):
        parse_server_message(codec.server_to_proto(HEKeyBundle(b"x")).SerializeToString())


def test_unknown_fields_never_reach_the_dataclass() -> None:
    msg = HEUpload(2, 5, (b"a", b"bc"), b"sig")
    canonical = codec.client_to_proto(msg).SerializeToString()
    tampered = canonical + bytes([0xC0, 0x3E, 0x05])  # field 1000, varint 5
    decoded = codec.parse_any_client_message(tampered)
    assert decoded == msg
    assert codec.client_to_proto(decoded).SerializeToString() == canonical


def good_config(**override: Any) -> pb.HEConfig:
    base = {
        "round": 0,
        "clients": [1, 2, 3],
        "dim": 10,
        "scheme": "ckks",
        "key_holder": 1,
        "clip": 1.0,
        "max_weight": 1,
        "levels": 2,
        "nonce": bytes(32),
        "model_hash": hashlib.sha256(b"m").digest(),
        "learning_rate": 1.0,
    }
    return pb.HEConfig(**{**base, **override})


@pytest.mark.parametrize(
    ("override", "text"),
    [
        ({"scheme": "paillier"}, "scheme"),
        ({"scheme": ""}, "scheme"),
        ({"key_holder": 9}, "key holder"),
        ({"clients": [2, 1, 3]}, "increasing"),
        ({"nonce": b"\x00" * 31}, "32 bytes"),
        ({"model_hash": b""}, "32 bytes"),
        ({"learning_rate": 0.0}, "learning_rate"),  # missing on the wire: proto3's default
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"dim": 0}, "dim"),
        ({"max_weight": 0}, "max_weight"),
    ],
)
def test_invalid_he_config_is_invalid_message(override: dict[str, Any], text: str) -> None:
    assert codec.he_config_from_proto(good_config()).clients == (1, 2, 3)
    with pytest.raises(InvalidMessage, match=f"invalid HEConfig: .*{text}"):
        codec.he_config_from_proto(good_config(**override))
    raw = pb.ServerMessage(he_start=pb.HEStart(config=good_config(**override)))
    with pytest.raises(InvalidMessage, match="invalid HEConfig"):
        parse_any_server_message(raw.SerializeToString())


def good_masked_config(**override: Any) -> pb.HEMaskedConfig:
    base = {
        "round": 0,
        "clients": [1, 2, 3],
        "threshold": 3,
        "dim": 10,
        "key_holder": 1,
        "clip": 1.0,
        "levels": 2,
        "max_weight": 1,
        "nonce": bytes(32),
        "model_hash": hashlib.sha256(b"m").digest(),
        "learning_rate": 1.0,
    }
    return pb.HEMaskedConfig(**{**base, **override})


@pytest.mark.parametrize(
    ("override", "text"),
    [
        ({"key_holder": 9}, "key holder"),
        ({"clients": [2, 1, 3]}, "increasing"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 4}, "threshold"),
        ({"nonce": b"\x00" * 31}, "32 bytes"),
        ({"model_hash": b""}, "32 bytes"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": math.inf}, "learning_rate"),
        ({"dim": 0}, "dim"),
        ({"levels": 1 << 40}, ""),  # the 3-client sum would wrap BFV's plain modulus
    ],
)
def test_invalid_he_masked_config_is_invalid_message(override: dict[str, Any], text: str) -> None:
    """A hybrid start the client cannot build decodes to InvalidMessage, never a crash."""
    assert codec.he_masked_config_from_proto(good_masked_config()).threshold == 3
    with pytest.raises(InvalidMessage, match=f"invalid HEMaskedConfig: .*{text}"):
        codec.he_masked_config_from_proto(good_masked_config(**override))
    raw = pb.ServerMessage(he_masked_start=pb.HEMaskedStart(config=good_masked_config(**override)))
    with pytest.raises(InvalidMessage, match="invalid HEMaskedConfig"):
        parse_any_server_message(raw.SerializeToString())


@settings(max_examples=200)
@given(raw=st.binary(max_size=300), member=st.sampled_from([50, 51, 52]))
def test_garbage_in_an_he_member_parses_or_is_invalid(raw: bytes, member: int) -> None:
    """Bytes inside an HE oneof member decode to a valid dataclass or raise InvalidMessage."""
    framed = _field(member, raw)
    try:
        decoded = codec.parse_any_client_message(framed)
    except InvalidMessage:
        return
    assert isinstance(decoded, get_args(AnyClientMessage))
    assert codec.parse_any_client_message(codec.client_to_proto(decoded).SerializeToString()) == (
        decoded
    )


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300), member=st.sampled_from([50, 51, 52, 53, 54]))
def test_garbage_in_an_he_server_member_parses_or_is_invalid(raw: bytes, member: int) -> None:
    try:
        decoded = parse_any_server_message(_field(member, raw))
    except InvalidMessage:
        return
    assert isinstance(decoded, get_args(AnyServerMessage))


def _field(number: int, body: bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    return varint(number << 3 | 2) + varint(len(body)) + body


def test_he_requests_are_signed_over_every_field() -> None:
    """T28 for HE messages: a phase of their own and a digest that covers each field."""
    from protocol.request_auth import body_digest, phase_of, sign_message, verify_message
    from secagg.primitives.signing import SigningKey

    key = SigningKey(hashlib.sha256(b"he-request-key").digest())
    join = HEJoin(2, 1, b"p" * 32, b"s" * 64, b"m" * 32)
    delivery = HEKeyDelivery(1, 1, b"ctx", (EncryptedShare(1, 2, b"sealed"),))
    upload = HEUpload(2, 1, (b"a", b"b"), b"sig")
    assert len({phase_of(m) for m in (join, delivery, upload)}) == 3
    variants: list[AnyClientMessage] = [
        dataclasses.replace(join, model_sha256=b"n" * 32),
        dataclasses.replace(join, public=b"q" * 32),
        dataclasses.replace(delivery, sealed=(EncryptedShare(1, 3, b"sealed"),)),
        dataclasses.replace(upload, blobs=(b"ab",)),  # same bytes, other framing
        dataclasses.replace(upload, signature=b"other"),
    ]
    originals: list[AnyClientMessage] = [join, join, delivery, upload, upload]
    for original, changed in zip(originals, variants, strict=True):
        assert body_digest(original) != body_digest(changed)
    session, nonce = bytes(32), bytes(16)
    auth = sign_message(key, upload, session=session, nonce=nonce)
    verify_message(key.public, auth, upload)
    with pytest.raises(AuthenticationFailed, match="bad request signature"):
        verify_message(key.public, auth, variants[3])
