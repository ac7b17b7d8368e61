"""The wire codec: lossless roundtrips, canonical decoding (T29), malformed input (T33).

The codec is the only place protobuf meets the protocol, so these tests pin
down three promises: every dataclass survives encode → bytes → decode
unchanged; nothing that protobuf keeps but the dataclass lacks (unknown
fields) gets through; and no byte string makes the parsers raise anything but
:class:`InvalidMessage`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import session
from protocol.build import make_config
from protocol.config import PROFILES, RoundConfig
from protocol.errors import InvalidMessage
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShare,
    GraphNonces,
    GraphReveal,
    KeyList,
    MaskedInput,
    RoundComplete,
    RoundStart,
    ServerAbort,
    ServerMessage,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
)
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey, sign, verify
from secagg.quantization import required_modulus_bits
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.wire import parse_client_message, parse_server_message

# ---------------------------------------------------------------------- strategies

U64 = st.integers(min_value=0, max_value=2**63 - 1)
IDS = st.integers(min_value=1, max_value=2**63 - 1)
BLOB = st.binary(max_size=40) | st.binary(min_size=32, max_size=200)  # keys, shares, sigs
TEXT = st.text(max_size=40)  # Hypothesis' default alphabet excludes surrogates
PAIRS = st.lists(st.tuples(U64, BLOB), max_size=6).map(tuple)
U64S = st.lists(U64, max_size=8).map(tuple)

ADVERTISE = st.builds(
    AdvertiseKeys,
    client=U64,
    round=U64,
    c_public=BLOB,
    s_public=BLOB,
    signature=BLOB,
    graph_commitment=BLOB,
)
SHARE = st.builds(EncryptedShare, sender=U64, recipient=U64, ciphertext=BLOB)


@st.composite
def direct_configs(draw: st.DrawFn) -> RoundConfig:
    """Any valid config, built field by field across the whole valid range."""
    clients = tuple(sorted(draw(st.sets(IDS, min_size=1, max_size=8))))
    n = len(clients)
    levels = draw(st.integers(min_value=2, max_value=2**20))
    max_weight = draw(st.integers(min_value=1, max_value=2**20))
    bits = draw(st.integers(min_value=required_modulus_bits(n, levels, max_weight), max_value=64))
    return RoundConfig(
        round=draw(U64),
        clients=clients,
        threshold=draw(st.integers(min_value=1, max_value=n)),
        dim=draw(st.integers(min_value=1, max_value=2**63 - 1)),
        modulus_bits=bits,
        clip=draw(
            st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
        ),
        levels=levels,
        max_weight=max_weight,
        profile=draw(st.sampled_from(PROFILES)),
        degree=draw(st.none() | st.integers(min_value=1, max_value=2**32 - 1)),
        nonce=draw(st.binary(min_size=32, max_size=32)),
        model_hash=draw(st.binary(min_size=32, max_size=32)),
    )


SIMULATION_CONFIGS = st.builds(
    make_config,
    clients=st.integers(min_value=1, max_value=12),
    dim=st.integers(min_value=1, max_value=1000),
    profile=st.sampled_from(PROFILES),
    round_=U64,
    seed=st.binary(max_size=8),
)
CONFIGS = direct_configs() | SIMULATION_CONFIGS

CLIENT_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    AdvertiseKeys: ADVERTISE,
    ShareKeys: st.builds(
        ShareKeys,
        client=U64,
        round=U64,
        shares=st.lists(SHARE, max_size=6).map(tuple),
        self_mask_commitment=BLOB,
        signature=BLOB,
    ),
    MaskedInput: st.builds(MaskedInput, client=U64, round=U64, payload=st.binary(max_size=2000)),
    ConsistencySignature: st.builds(ConsistencySignature, client=U64, round=U64, signature=BLOB),
    UnmaskShares: st.builds(
        UnmaskShares, client=U64, round=U64, self_mask_shares=PAIRS, key_shares=PAIRS
    ),
    ClientAbort: st.builds(ClientAbort, client=U64, round=U64, reason=TEXT),
    GraphReveal: st.builds(GraphReveal, client=U64, round=U64, nonce=BLOB),
}
SERVER_STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    RoundStart: st.builds(RoundStart, config=CONFIGS),
    KeyList: st.builds(KeyList, keys=st.lists(ADVERTISE, max_size=6).map(tuple)),
    GraphNonces: st.builds(GraphNonces, nonces=PAIRS),
    ShareBundle: st.builds(
        ShareBundle, senders=U64S, shares=st.lists(SHARE, max_size=6).map(tuple)
    ),
    ConsistencyRequest: st.builds(ConsistencyRequest, survivors=U64S),
    UnmaskRequest: st.builds(UnmaskRequest, survivors=U64S, signatures=PAIRS),
    RoundComplete: st.just(RoundComplete()),
    ServerAbort: st.builds(ServerAbort, reason=TEXT),
}
CLIENT_MESSAGES = st.one_of(*CLIENT_STRATEGIES.values())
SERVER_MESSAGES = st.one_of(*SERVER_STRATEGIES.values())


def client_bytes(msg: ClientMessage) -> bytes:
    return codec.client_to_proto(msg).SerializeToString()


def server_bytes(msg: ServerMessage) -> bytes:
    return codec.server_to_proto(msg).SerializeToString()


def varint(n: int) -> bytes:
    """Base-128 varint, written here so the tests don't trust protobuf's encoder."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def unknown_varint(field: int = 1000, value: int = 5) -> bytes:
    """A varint field whose number no message of the schema uses."""
    return varint(field << 3) + varint(value)


def length_delimited(field: int, body: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(body)) + body


# ---------------------------------------------------------------------- schema coverage


def test_strategies_cover_every_message_type() -> None:
    """A message type added to the unions must get a roundtrip strategy here."""
    assert set(CLIENT_STRATEGIES) == set(get_args(ClientMessage))
    assert set(SERVER_STRATEGIES) == set(get_args(ServerMessage))


@pytest.mark.parametrize("wrapper", [pb.ClientMessage, pb.ServerMessage])
def test_wrapper_is_one_oneof_of_distinct_types(wrapper: Any) -> None:
    """The decoder dispatches on the submessage type; that needs one type per member.

    Outside the oneof only a ClientMessage's request signature (``auth``) may exist.
    """
    desc = wrapper.DESCRIPTOR
    assert [o.name for o in desc.oneofs] == ["kind"]
    members = desc.oneofs[0].fields
    outside = [f.name for f in desc.fields if f not in members]
    assert outside == (["auth"] if wrapper is pb.ClientMessage else [])
    types = [f.message_type.full_name for f in members]
    assert len(set(types)) == len(types)


@pytest.mark.parametrize(
    "cls",
    [RoundConfig, EncryptedShare, *get_args(ClientMessage), *get_args(ServerMessage)],
    ids=lambda c: c.__name__,
)
def test_dataclass_and_wire_fields_match(cls: type[Any]) -> None:
    """A field added on one side only would be silently dropped by the codec."""
    wire = getattr(pb, cls.__name__)
    assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in wire.DESCRIPTOR.fields]


# ---------------------------------------------------------------------- roundtrips


@pytest.mark.parametrize("cls", list(CLIENT_STRATEGIES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_client_message_roundtrip(cls: type[Any], data: st.DataObject) -> None:
    msg = data.draw(CLIENT_STRATEGIES[cls])
    decoded = parse_client_message(client_bytes(msg))
    assert type(decoded) is cls
    assert decoded == msg


@pytest.mark.parametrize("cls", list(SERVER_STRATEGIES), ids=lambda c: c.__name__)
@given(data=st.data())
def test_server_message_roundtrip(cls: type[Any], data: st.DataObject) -> None:
    msg = data.draw(SERVER_STRATEGIES[cls])
    decoded = parse_server_message(server_bytes(msg))
    assert type(decoded) is cls
    assert decoded == msg


@given(CONFIGS)
def test_config_roundtrip(config: RoundConfig) -> None:
    raw = codec.config_to_proto(config).SerializeToString()
    decoded = codec.config_from_proto(pb.RoundConfig.FromString(raw))
    assert decoded == config
    assert decoded.canonical() == config.canonical()


def test_complete_graph_travels_as_degree_zero() -> None:
    complete = make_config(clients=5, dim=3)
    sparse = make_config(clients=5, dim=3, degree=2)
    assert complete.degree is None
    assert codec.config_to_proto(complete).degree == 0
    assert codec.config_from_proto(codec.config_to_proto(complete)).degree is None
    assert codec.config_from_proto(codec.config_to_proto(sparse)).degree == 2


def test_uint64_extremes_roundtrip() -> None:
    top = 2**64 - 1
    msg = UnmaskShares(top, top, ((top, b"\x00" * 64),), ((0, b""),))
    assert parse_client_message(client_bytes(msg)) == msg


@pytest.mark.parametrize(
    "msg",
    [
        AdvertiseKeys(-1, 0, b"", b"", b""),
        AdvertiseKeys(2**64, 0, b"", b"", b""),
        ShareKeys(1, 0, (EncryptedShare(1, -2, b""),), b"", b""),
        UnmaskShares(1, 0, ((2**64, b""),), ()),
        ClientAbort(1, 0, "lone surrogate \ud800"),
    ],
    ids=["negative", "over-u64", "nested-negative", "pair-over-u64", "not-utf8"],
)
def test_unencodable_client_message_is_invalid(msg: ClientMessage) -> None:
    with pytest.raises(InvalidMessage, match="does not fit the wire schema"):
        codec.client_to_proto(msg)


@pytest.mark.parametrize(
    "msg",
    [
        ShareBundle((2**64,), ()),
        UnmaskRequest((1,), ((-1, b""),)),
        ServerAbort("\udfff"),
        RoundStart(dataclasses.replace(make_config(clients=3, dim=2), degree=2**32)),
    ],
    ids=["over-u64", "negative-pair", "not-utf8", "degree-over-u32"],
)
def test_unencodable_server_message_is_invalid(msg: ServerMessage) -> None:
    with pytest.raises(InvalidMessage, match="does not fit the wire schema"):
        codec.server_to_proto(msg)


# ---------------------------------------------------------------------- T29 canonical encoding


@given(CLIENT_MESSAGES, st.integers(min_value=16, max_value=2**29 - 1), U64)
def test_unknown_top_level_field_never_reaches_the_dataclass(
    msg: ClientMessage, field: int, value: int
) -> None:
    canonical = client_bytes(msg)
    tampered = canonical + unknown_varint(field, value)
    # Protobuf itself keeps the unknown field and would re-serialise it ...
    assert pb.ClientMessage.FromString(tampered).SerializeToString() != canonical
    # ... the dataclass cannot hold it, so re-encoding is canonical again.
    decoded = parse_client_message(tampered)
    assert decoded == msg
    assert client_bytes(decoded) == canonical


@given(SERVER_MESSAGES)
def test_unknown_server_field_never_reaches_the_dataclass(msg: ServerMessage) -> None:
    canonical = server_bytes(msg)
    decoded = parse_server_message(canonical + unknown_varint())
    assert decoded == msg
    assert server_bytes(decoded) == canonical


@given(ADVERTISE)
def test_unknown_field_inside_a_submessage_is_dropped(msg: AdvertiseKeys) -> None:
    inner = codec.client_to_proto(msg).advertise_keys.SerializeToString()
    canonical = length_delimited(pb.ClientMessage.ADVERTISE_KEYS_FIELD_NUMBER, inner)
    tampered = length_delimited(
        pb.ClientMessage.ADVERTISE_KEYS_FIELD_NUMBER, inner + unknown_varint()
    )
    assert canonical == client_bytes(msg)
    decoded = parse_client_message(tampered)
    assert decoded == msg
    assert client_bytes(decoded) == canonical


def test_signatures_bind_session_fields_not_proto_bytes() -> None:
    """An advertisement signed before encoding verifies after a tampered-with decode."""
    config = make_config(clients=4, dim=8, seed=b"t29")
    key = SigningKey(hashlib.sha256(b"client-2 signing seed").digest())
    c_pk, s_pk = hashlib.sha256(b"c").digest(), hashlib.sha256(b"s").digest()
    fields = session.advertise_fields(config, 2, c_pk, s_pk)
    original = AdvertiseKeys(2, config.round, c_pk, s_pk, sign(key, *fields))

    tampered = client_bytes(original) + unknown_varint()
    decoded = parse_client_message(tampered)
    assert isinstance(decoded, AdvertiseKeys)
    decoded_fields = session.advertise_fields(
        config, decoded.client, decoded.c_public, decoded.s_public
    )
    assert decoded_fields == fields
    verify(key.public, decoded.signature, *decoded_fields)
    assert session.session_id(config, [decoded]) == session.session_id(config, [original])

    # The config too: an unknown field inside it changes neither digest nor session.
    start = server_bytes(RoundStart(config))
    inner = codec.config_to_proto(config).SerializeToString() + unknown_varint()
    tampered_start = length_delimited(
        pb.ServerMessage.ROUND_START_FIELD_NUMBER,
        length_delimited(pb.RoundStart.CONFIG_FIELD_NUMBER, inner),
    )
    assert tampered_start != start
    seen = parse_server_message(tampered_start)
    assert isinstance(seen, RoundStart)
    assert session.config_digest(seen.config) == session.config_digest(config)


# ---------------------------------------------------------------------- T33 malformed protobuf

PARSERS: list[Callable[[bytes], object]] = [
    parse_client_message,
    parse_server_message,
]
PARSER_IDS = ["client", "server"]

MALFORMED = {
    "truncated-varint": b"\x08\xff",
    "truncated-tag": b"\x80",
    "varint-too-long": b"\x08" + b"\xff" * 10 + b"\x01",
    "length-past-end": b"\x0a\x05\x08\x01",
    "huge-length": b"\x0a\xff\xff\xff\xff\x0f",
    "truncated-inner-varint": length_delimited(1, b"\x08\xff"),
    "invalid-wire-type": b"\x0f\x00",
    "field-number-zero": b"\x00\x01",
    "unterminated-groups": b"\x0b" * 100_000,
    "deep-balanced-groups": b"\x0b" * 5_000 + b"\x0c" * 5_000,
    "unmatched-end-group": b"\x0c",
    "empty": b"",
    "unknown-fields-only": unknown_varint() + length_delimited(99, b"\xff" * 10),
    "deep-unknown-nesting": length_delimited(99, b"".join([b"\x0b"] * 300 + [b"\x0c"] * 300)),
    "member-with-wrong-wire-type": b"\x08\x01",  # field 1 as a varint, not a message
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize("parse", PARSERS, ids=PARSER_IDS)
def test_malformed_bytes_are_invalid_message(parse: Callable[[bytes], object], raw: bytes) -> None:
    with pytest.raises(InvalidMessage):
        parse(raw)


def test_bad_utf8_reason_is_invalid_message() -> None:
    bad = b"\xff\xfe"
    client = length_delimited(pb.ClientAbort.REASON_FIELD_NUMBER, bad)
    server = length_delimited(pb.ServerAbort.REASON_FIELD_NUMBER, bad)
    with pytest.raises(InvalidMessage):
        parse_client_message(length_delimited(pb.ClientMessage.ABORT_FIELD_NUMBER, client))
    with pytest.raises(InvalidMessage):
        parse_server_message(length_delimited(pb.ServerMessage.ABORT_FIELD_NUMBER, server))


def test_empty_oneof_is_invalid_message() -> None:
    with pytest.raises(InvalidMessage, match="empty oneof"):
        codec.client_from_proto(pb.ClientMessage())
    with pytest.raises(InvalidMessage, match="empty oneof"):
        codec.server_from_proto(pb.ServerMessage())
    with pytest.raises(InvalidMessage, match="empty oneof"):
        parse_client_message(pb.ClientMessage().SerializeToString())


def test_member_set_to_empty_submessage_still_counts() -> None:
    """Presence is the oneof's, not the fields': an all-default member decodes."""
    assert parse_client_message(length_delimited(1, b"")) == AdvertiseKeys(0, 0, b"", b"", b"")
    assert (
        parse_server_message(length_delimited(pb.ServerMessage.ROUND_COMPLETE_FIELD_NUMBER, b""))
        == RoundComplete()
    )


@settings(max_examples=200)
@given(raw=st.binary(max_size=300))
@pytest.mark.parametrize("parse", PARSERS, ids=PARSER_IDS)
def test_random_bytes_parse_or_raise_invalid_message(
    parse: Callable[[bytes], object], raw: bytes
) -> None:
    """Garbage either decodes to a valid dataclass or is InvalidMessage, nothing else."""
    try:
        decoded = parse(raw)
    except InvalidMessage:
        return
    if parse is parse_client_message:
        assert isinstance(decoded, get_args(ClientMessage))
        assert parse_client_message(client_bytes(decoded)) == decoded
    else:
        assert isinstance(decoded, get_args(ServerMessage))
        assert parse_server_message(server_bytes(decoded)) == decoded


@settings(max_examples=200)
@given(msg=CLIENT_MESSAGES, data=st.data())
def test_mutated_messages_parse_or_raise_invalid_message(
    msg: ClientMessage, data: st.DataObject
) -> None:
    """Near-valid bytes (one cut or flipped byte) reach deeper parser paths than noise."""
    raw = bytearray(client_bytes(msg))
    if raw:
        at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        if data.draw(st.booleans()):
            raw[at] ^= data.draw(st.integers(min_value=1, max_value=255))
        else:
            del raw[at:]
    try:
        decoded = parse_client_message(bytes(raw))
    except InvalidMessage:
        return
    assert isinstance(decoded, get_args(ClientMessage))


# ---------------------------------------------------------------------- invalid configs

BASE = make_config(clients=5, dim=16, seed=b"invalid-configs")


def wire_config(**override: Any) -> pb.RoundConfig:
    """BASE on the wire with some fields replaced (proto3 cannot merge a zero in)."""
    fields = {f.name: getattr(BASE, f.name) for f in dataclasses.fields(RoundConfig)}
    fields["degree"] = fields["degree"] or 0
    fields.update(override)
    return pb.RoundConfig(**fields)


INVALID_CONFIGS = {
    "threshold-zero": ({"threshold": 0}, "threshold"),
    "threshold-above-n": ({"threshold": 6}, "threshold"),
    "nonce-short": ({"nonce": b"\x00" * 31}, "32 bytes"),
    "nonce-long": ({"nonce": b"\x00" * 33}, "32 bytes"),
    "nonce-missing": ({"nonce": b""}, "32 bytes"),
    "model-hash-short": ({"model_hash": b"\x01"}, "32 bytes"),
    "modulus-could-wrap": ({"modulus_bits": 16}, "wrap"),
    "modulus-zero": ({"modulus_bits": 0}, "modulus bits"),
    "modulus-over-64": ({"modulus_bits": 65}, "modulus bits"),
    "modulus-u32-max": ({"modulus_bits": 2**32 - 1}, "modulus bits"),
    "weight-could-wrap": ({"max_weight": 2**63}, "wrap"),
    "no-clients": ({"clients": []}, "cohort"),
    "client-zero": ({"clients": [0, 1, 2]}, "cohort"),
    "clients-unsorted": ({"clients": [2, 1, 3]}, "increasing"),
    "clients-duplicate": ({"clients": [1, 1, 2]}, "increasing"),
    "dim-zero": ({"dim": 0}, "dim"),
    "clip-zero": ({"clip": 0.0}, "clip"),
    "clip-negative": ({"clip": -1.0}, "clip"),
    "clip-nan": ({"clip": math.nan}, "clip"),
    "clip-inf": ({"clip": math.inf}, "clip"),
    "levels-one": ({"levels": 1}, "levels"),
    "levels-huge": ({"levels": 2**60}, "levels"),
    "max-weight-zero": ({"max_weight": 0}, "max_weight"),
    "profile-unknown": ({"profile": "malicious"}, "profile"),
    "profile-missing": ({"profile": ""}, "profile"),
}


def test_base_config_is_valid() -> None:
    """The invalid cases below differ from a config that decodes fine."""
    assert codec.config_from_proto(wire_config()) == BASE


@pytest.mark.parametrize(
    ("override", "text"), list(INVALID_CONFIGS.values()), ids=list(INVALID_CONFIGS)
)
def test_invalid_config_is_invalid_message(override: dict[str, Any], text: str) -> None:
    wire = wire_config(**override)
    with pytest.raises(InvalidMessage, match=f"invalid RoundConfig: .*{text}") as caught:
        codec.config_from_proto(wire)
    if "profile" not in override:  # the codec narrows the profile itself
        assert isinstance(caught.value.__cause__, ParameterError)
    # The same config inside a RoundStart from the wire: still InvalidMessage.
    raw = pb.ServerMessage(round_start=pb.RoundStart(config=wire)).SerializeToString()
    with pytest.raises(InvalidMessage, match="invalid RoundConfig"):
        parse_server_message(raw)


def test_round_start_without_config_is_invalid_message() -> None:
    raw = length_delimited(pb.ServerMessage.ROUND_START_FIELD_NUMBER, b"")
    with pytest.raises(InvalidMessage, match="invalid RoundConfig"):
        parse_server_message(raw)
