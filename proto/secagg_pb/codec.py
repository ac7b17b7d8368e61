"""The single mapping between wire messages (``secagg.v1``) and protocol dataclasses.

Only this module knows the protobuf types; everything above the transport
speaks the frozen dataclasses of :mod:`protocol.messages`. Decoding builds each
dataclass field by field, so unknown wire fields never reach the protocol and
re-encoding a decoded message is canonical. Nothing signed depends on protobuf
bytes: :mod:`protocol.session` signs canonical encodings of dataclass fields.

Errors: anything a peer can send that does not decode to a valid dataclass
raises :class:`~protocol.errors.InvalidMessage` (never ``DecodeError`` or
``ParameterError``), so the host maps every malformed message to one status.
A local dataclass that the schema cannot carry (an int outside uint64/uint32,
a string that is not UTF-8) also raises ``InvalidMessage`` on encoding.
"""

from __future__ import annotations

from typing import assert_never

from google.protobuf.message import DecodeError

from protocol.config import PROFILES, Profile, RoundConfig
from protocol.errors import InvalidMessage
from protocol.he_messages import (
    HE_SCHEMES,
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
    HEScheme,
    HEStart,
    HEUpload,
)
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
from protocol.method_messages import ClusterRelease, MethodState
from protocol.request_auth import RequestAuth
from secagg.errors import ParameterError
from secagg_pb.v1 import secagg_pb2 as pb

__all__ = [
    "any_client_from_proto",
    "any_server_from_proto",
    "auth_from_proto",
    "auth_to_proto",
    "client_from_proto",
    "client_to_proto",
    "config_from_proto",
    "config_to_proto",
    "he_config_from_proto",
    "he_config_to_proto",
    "he_masked_config_from_proto",
    "he_masked_config_to_proto",
    "masked_input_header",
    "method_state_from_proto",
    "method_state_to_proto",
    "parse_any_client_message",
    "server_from_proto",
    "server_to_proto",
    "signed_client_to_proto",
]

# ---------------------------------------------------------------- round config


def config_to_proto(c: RoundConfig) -> pb.RoundConfig:
    """Encode a config; ``degree=None`` (complete graph) travels as 0."""
    try:
        return _config_to_proto(c)
    except ValueError as exc:  # protobuf: an int out of uint32/uint64 range
        raise InvalidMessage(f"RoundConfig does not fit the wire schema: {exc}") from exc


def config_from_proto(m: pb.RoundConfig) -> RoundConfig:
    """Decode and validate a config; an invalid one is the peer's fault, so InvalidMessage."""
    try:
        return RoundConfig(
            round=m.round,
            clients=tuple(m.clients),
            threshold=m.threshold,
            dim=m.dim,
            modulus_bits=m.modulus_bits,
            clip=m.clip,
            levels=m.levels,
            max_weight=m.max_weight,
            profile=_profile(m.profile),
            degree=m.degree or None,
            nonce=m.nonce,
            model_hash=m.model_hash,
        )
    except ParameterError as exc:
        raise InvalidMessage(f"invalid RoundConfig: {exc}") from exc


def _config_to_proto(c: RoundConfig) -> pb.RoundConfig:
    return pb.RoundConfig(
        round=c.round,
        clients=c.clients,
        threshold=c.threshold,
        dim=c.dim,
        modulus_bits=c.modulus_bits,
        clip=c.clip,
        levels=c.levels,
        max_weight=c.max_weight,
        profile=c.profile,
        degree=0 if c.degree is None else c.degree,
        nonce=c.nonce,
        model_hash=c.model_hash,
    )


def _profile(name: str) -> Profile:
    """Narrow the wire string to the Literal the dataclass expects."""
    match name:
        case "active":
            return "active"
        case "semi-honest":
            return "semi-honest"
        case "plain":
            return "plain"
        case _:
            raise InvalidMessage(f"invalid RoundConfig: profile {name!r} is not one of {PROFILES}")


# ---------------------------------------------------------------- client → server


def client_to_proto(msg: AnyClientMessage) -> pb.ClientMessage:
    """Wrap a client dataclass (SecAgg's or an HE round's) in the ``ClientMessage`` oneof."""
    try:
        if isinstance(msg, HEJoin | HEKeyDelivery | HEUpload):
            return _he_client_to_proto(msg)
        if isinstance(msg, ClusterRelease):
            return pb.ClientMessage(cluster_release=_release_to_proto(msg))
        return _client_to_proto(msg)
    except ValueError as exc:  # protobuf: int out of range, str not encodable as UTF-8
        raise InvalidMessage(f"{type(msg).__name__} does not fit the wire schema: {exc}") from exc


def signed_client_to_proto(msg: AnyClientMessage, auth: RequestAuth | None) -> pb.ClientMessage:
    """:func:`client_to_proto` with the request signature attached (None: unsigned)."""
    wire = client_to_proto(msg)
    if auth is not None:
        wire.auth.CopyFrom(auth_to_proto(auth))
    return wire


def auth_to_proto(auth: RequestAuth) -> pb.RequestAuth:
    """Encode a request signature."""
    return pb.RequestAuth(session=auth.session, nonce=auth.nonce, signature=auth.signature)


def auth_from_proto(m: pb.ClientMessage | pb.UploadChunk) -> RequestAuth | None:
    """The request signature a ClientMessage or the first UploadChunk carries, or None.

    Lengths are checked where the signature is verified
    (:func:`protocol.request_auth.verify_request`), so a malformed one is
    UNAUTHENTICATED like any other bad signature.
    """
    if not m.HasField("auth"):
        return None
    return RequestAuth(session=m.auth.session, nonce=m.auth.nonce, signature=m.auth.signature)


def client_from_proto(m: pb.ClientMessage) -> ClientMessage:
    """Unwrap the oneof; an empty (or unknown) one is InvalidMessage. ``auth`` is ignored."""
    match _oneof_value(m):
        case pb.AdvertiseKeys() as w:
            return _advertise_from_proto(w)
        case pb.ShareKeys() as w:
            return ShareKeys(
                client=w.client,
                round=w.round,
                shares=tuple(_share_from_proto(s) for s in w.shares),
                self_mask_commitment=w.self_mask_commitment,
                signature=w.signature,
            )
        case pb.MaskedInput() as w:
            return MaskedInput(client=w.client, round=w.round, payload=w.payload)
        case pb.ConsistencySignature() as w:
            return ConsistencySignature(client=w.client, round=w.round, signature=w.signature)
        case pb.UnmaskShares() as w:
            return UnmaskShares(
                client=w.client,
                round=w.round,
                self_mask_shares=tuple(_owned_from_proto(s) for s in w.self_mask_shares),
                key_shares=tuple(_owned_from_proto(s) for s in w.key_shares),
            )
        case pb.ClientAbort() as w:
            return ClientAbort(client=w.client, round=w.round, reason=w.reason)
        case pb.GraphReveal() as w:
            return GraphReveal(client=w.client, round=w.round, nonce=w.nonce)
        case None:
            raise InvalidMessage("ClientMessage carries no message (empty oneof)")
        case other:
            raise InvalidMessage(f"ClientMessage of unsupported kind {type(other).__name__}")


def masked_input_header(client: int, round_: int, length: int) -> bytes:
    """The bytes that precede a ``length``-byte payload in its serialised ClientMessage.

    ``masked_input_header(c, r, len(p)) + p`` equals
    ``client_to_proto(MaskedInput(c, r, p)).SerializeToString()``, so a host
    can log an upload it holds on disk without building it in memory.
    """
    inner = pb.MaskedInput(client=client, round=round_).SerializeToString()
    if length:
        inner += _tag(3) + _varint(length)  # payload: field 3, length-delimited
    return _tag(3) + _varint(len(inner) + length) + inner  # ClientMessage.masked_input = 3


def _tag(field: int) -> bytes:
    return _varint(field << 3 | 2)  # wire type 2: length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _client_to_proto(msg: ClientMessage) -> pb.ClientMessage:
    match msg:
        case AdvertiseKeys():
            return pb.ClientMessage(advertise_keys=_advertise_to_proto(msg))
        case ShareKeys():
            return pb.ClientMessage(
                share_keys=pb.ShareKeys(
                    client=msg.client,
                    round=msg.round,
                    shares=[_share_to_proto(s) for s in msg.shares],
                    self_mask_commitment=msg.self_mask_commitment,
                    signature=msg.signature,
                )
            )
        case MaskedInput():
            return pb.ClientMessage(
                masked_input=pb.MaskedInput(client=msg.client, round=msg.round, payload=msg.payload)
            )
        case ConsistencySignature():
            return pb.ClientMessage(
                consistency_signature=pb.ConsistencySignature(
                    client=msg.client, round=msg.round, signature=msg.signature
                )
            )
        case UnmaskShares():
            return pb.ClientMessage(
                unmask_shares=pb.UnmaskShares(
                    client=msg.client,
                    round=msg.round,
                    self_mask_shares=[
                        pb.OwnedShare(owner=o, share=s) for o, s in msg.self_mask_shares
                    ],
                    key_shares=[pb.OwnedShare(owner=o, share=s) for o, s in msg.key_shares],
                )
            )
        case ClientAbort():
            return pb.ClientMessage(
                abort=pb.ClientAbort(client=msg.client, round=msg.round, reason=msg.reason)
            )
        case GraphReveal():
            return pb.ClientMessage(
                graph_reveal=pb.GraphReveal(client=msg.client, round=msg.round, nonce=msg.nonce)
            )
        case _:
            assert_never(msg)


# ---------------------------------------------------------------- server → client


def server_to_proto(msg: AnyServerMessage) -> pb.ServerMessage:
    """Wrap a server dataclass (SecAgg's or an HE round's) in the ``ServerMessage`` oneof."""
    try:
        if isinstance(msg, HEStart | HEMaskedStart | HEKeys | HEKeyBundle | HEResult):
            return _he_server_to_proto(msg)
        return _server_to_proto(msg)
    except ValueError as exc:  # protobuf: int out of range, str not encodable as UTF-8
        raise InvalidMessage(f"{type(msg).__name__} does not fit the wire schema: {exc}") from exc


def server_from_proto(m: pb.ServerMessage) -> ServerMessage:
    """Unwrap the oneof; an empty one, or an invalid round config, is InvalidMessage."""
    match _oneof_value(m):
        case pb.RoundStart() as w:
            state = method_state_from_proto(w.state) if w.HasField("state") else None
            return RoundStart(config=config_from_proto(w.config), state=state)
        case pb.KeyList() as w:
            return KeyList(keys=tuple(_advertise_from_proto(k) for k in w.keys))
        case pb.ShareBundle() as w:
            return ShareBundle(
                senders=tuple(w.senders),
                shares=tuple(_share_from_proto(s) for s in w.shares),
            )
        case pb.ConsistencyRequest() as w:
            return ConsistencyRequest(survivors=tuple(w.survivors))
        case pb.UnmaskRequest() as w:
            return UnmaskRequest(
                survivors=tuple(w.survivors),
                signatures=tuple(_signed_from_proto(s) for s in w.signatures),
            )
        case pb.RoundComplete():
            return RoundComplete()
        case pb.ServerAbort() as w:
            return ServerAbort(reason=w.reason)
        case pb.GraphNonces() as w:
            return GraphNonces(nonces=tuple((o.client, o.nonce) for o in w.nonces))
        case None:
            raise InvalidMessage("ServerMessage carries no message (empty oneof)")
        case other:
            raise InvalidMessage(f"ServerMessage of unsupported kind {type(other).__name__}")


def _server_to_proto(msg: ServerMessage) -> pb.ServerMessage:
    match msg:
        case RoundStart():
            start = pb.RoundStart(config=_config_to_proto(msg.config))
            if msg.state is not None:
                start.state.CopyFrom(method_state_to_proto(msg.state))
            return pb.ServerMessage(round_start=start)
        case KeyList():
            return pb.ServerMessage(
                key_list=pb.KeyList(keys=[_advertise_to_proto(k) for k in msg.keys])
            )
        case ShareBundle():
            return pb.ServerMessage(
                share_bundle=pb.ShareBundle(
                    senders=msg.senders, shares=[_share_to_proto(s) for s in msg.shares]
                )
            )
        case ConsistencyRequest():
            return pb.ServerMessage(
                consistency_request=pb.ConsistencyRequest(survivors=msg.survivors)
            )
        case UnmaskRequest():
            return pb.ServerMessage(
                unmask_request=pb.UnmaskRequest(
                    survivors=msg.survivors,
                    signatures=[pb.SignedBy(client=c, signature=s) for c, s in msg.signatures],
                )
            )
        case RoundComplete():
            return pb.ServerMessage(round_complete=pb.RoundComplete())
        case ServerAbort():
            return pb.ServerMessage(abort=pb.ServerAbort(reason=msg.reason))
        case GraphNonces():
            return pb.ServerMessage(
                graph_nonces=pb.GraphNonces(
                    nonces=[pb.OwnedNonce(client=c, nonce=n) for c, n in msg.nonces]
                )
            )
        case _:
            assert_never(msg)


# ---------------------------------------------------------------- shared parts


def _oneof_value(m: pb.ClientMessage | pb.ServerMessage) -> object | None:
    """The one submessage set in the wrapper's ``kind`` oneof, or None.

    Each member has its own message type, so the callers dispatch on the type.
    A member set to an empty submessage still counts as set; fields outside
    the oneof (a ClientMessage's ``auth``) are not members.
    """
    name = m.WhichOneof("kind")
    return None if name is None else getattr(m, name)


def _advertise_to_proto(a: AdvertiseKeys) -> pb.AdvertiseKeys:
    return pb.AdvertiseKeys(
        client=a.client,
        round=a.round,
        c_public=a.c_public,
        s_public=a.s_public,
        signature=a.signature,
        graph_commitment=a.graph_commitment,
    )


def _advertise_from_proto(w: pb.AdvertiseKeys) -> AdvertiseKeys:
    return AdvertiseKeys(
        client=w.client,
        round=w.round,
        c_public=w.c_public,
        s_public=w.s_public,
        signature=w.signature,
        graph_commitment=w.graph_commitment,
    )


def _share_to_proto(s: EncryptedShare) -> pb.EncryptedShare:
    return pb.EncryptedShare(sender=s.sender, recipient=s.recipient, ciphertext=s.ciphertext)


def _share_from_proto(w: pb.EncryptedShare) -> EncryptedShare:
    return EncryptedShare(sender=w.sender, recipient=w.recipient, ciphertext=w.ciphertext)


def _owned_from_proto(w: pb.OwnedShare) -> tuple[int, bytes]:
    return (w.owner, w.share)


def _signed_from_proto(w: pb.SignedBy) -> tuple[int, bytes]:
    return (w.client, w.signature)


# ---------------------------------------------------------------- homomorphic rounds
#
# client_from_proto / server_from_proto decode SecAgg's messages only (an HE member is
# "unsupported" there); hosts that carry HE rounds use the any_* decoders below.


def he_config_to_proto(c: HEConfig) -> pb.HEConfig:
    """Encode an HE round config."""
    try:
        return _he_config_to_proto(c)
    except ValueError as exc:  # protobuf: an int out of uint64 range
        raise InvalidMessage(f"HEConfig does not fit the wire schema: {exc}") from exc


def he_config_from_proto(m: pb.HEConfig) -> HEConfig:
    """Decode and validate an HE config; an invalid one is InvalidMessage."""
    try:
        return HEConfig(
            round=m.round,
            clients=tuple(m.clients),
            dim=m.dim,
            scheme=_scheme(m.scheme),
            key_holder=m.key_holder,
            clip=m.clip,
            max_weight=m.max_weight,
            levels=m.levels,
            nonce=m.nonce,
            model_hash=m.model_hash,
            learning_rate=m.learning_rate,
        )
    except ParameterError as exc:
        raise InvalidMessage(f"invalid HEConfig: {exc}") from exc


def he_masked_config_to_proto(c: HEMaskedConfig) -> pb.HEMaskedConfig:
    """Encode a hybrid (bfv-masked) round config."""
    try:
        return _he_masked_config_to_proto(c)
    except ValueError as exc:  # protobuf: an int out of uint64 range
        raise InvalidMessage(f"HEMaskedConfig does not fit the wire schema: {exc}") from exc


def he_masked_config_from_proto(m: pb.HEMaskedConfig) -> HEMaskedConfig:
    """Decode and validate a hybrid config (both derived configs too); else InvalidMessage."""
    try:
        return HEMaskedConfig(
            round=m.round,
            clients=tuple(m.clients),
            threshold=m.threshold,
            dim=m.dim,
            key_holder=m.key_holder,
            clip=m.clip,
            levels=m.levels,
            max_weight=m.max_weight,
            nonce=m.nonce,
            model_hash=m.model_hash,
            learning_rate=m.learning_rate,
        )
    except ParameterError as exc:
        raise InvalidMessage(f"invalid HEMaskedConfig: {exc}") from exc


def any_client_from_proto(m: pb.ClientMessage) -> AnyClientMessage:
    """:func:`client_from_proto`, HE members included."""
    match _oneof_value(m):
        case pb.HEJoin() as w:
            return _he_join_from_proto(w)
        case pb.HEKeyDelivery() as w:
            return HEKeyDelivery(
                client=w.client,
                round=w.round,
                public_context=w.public_context,
                sealed=tuple(_share_from_proto(s) for s in w.sealed),
            )
        case pb.HEUpload() as w:
            return HEUpload(
                client=w.client, round=w.round, blobs=tuple(w.blobs), signature=w.signature
            )
        case pb.ClusterRelease() as w:
            return _release_from_proto(w)
    return client_from_proto(m)


def parse_any_client_message(raw: bytes) -> AnyClientMessage:
    """Parse untrusted bytes, HE members included; every failure is InvalidMessage."""
    wire = pb.ClientMessage()
    try:
        wire.ParseFromString(raw)
    except (DecodeError, ValueError) as exc:
        raise InvalidMessage(f"malformed ClientMessage: {exc}") from exc
    return any_client_from_proto(wire)


def any_server_from_proto(m: pb.ServerMessage) -> AnyServerMessage:
    """:func:`server_from_proto`, HE members included."""
    match _oneof_value(m):
        case pb.HEStart() as w:
            state = method_state_from_proto(w.state) if w.HasField("state") else None
            return HEStart(config=he_config_from_proto(w.config), state=state)
        case pb.HEMaskedStart() as w:
            return HEMaskedStart(config=he_masked_config_from_proto(w.config))
        case pb.HEKeys() as w:
            return HEKeys(joins=tuple(_he_join_from_proto(j) for j in w.joins))
        case pb.HEKeyBundle() as w:
            return HEKeyBundle(sealed=w.sealed)
        case pb.HEResult() as w:
            return HEResult(blobs=tuple(w.blobs), contributors=tuple(w.contributors))
    return server_from_proto(m)


def _he_config_to_proto(c: HEConfig) -> pb.HEConfig:
    return pb.HEConfig(
        round=c.round,
        clients=c.clients,
        dim=c.dim,
        scheme=c.scheme,
        key_holder=c.key_holder,
        clip=c.clip,
        max_weight=c.max_weight,
        levels=c.levels,
        nonce=c.nonce,
        model_hash=c.model_hash,
        learning_rate=c.learning_rate,
    )


def _he_masked_config_to_proto(c: HEMaskedConfig) -> pb.HEMaskedConfig:
    return pb.HEMaskedConfig(
        round=c.round,
        clients=c.clients,
        threshold=c.threshold,
        dim=c.dim,
        key_holder=c.key_holder,
        clip=c.clip,
        levels=c.levels,
        max_weight=c.max_weight,
        nonce=c.nonce,
        model_hash=c.model_hash,
        learning_rate=c.learning_rate,
    )


def _scheme(name: str) -> HEScheme:
    match name:
        case "ckks":
            return "ckks"
        case "bfv":
            return "bfv"
        case _:
            raise InvalidMessage(f"invalid HEConfig: scheme {name!r} is not one of {HE_SCHEMES}")


def _he_join_to_proto(j: HEJoin) -> pb.HEJoin:
    return pb.HEJoin(
        client=j.client,
        round=j.round,
        public=j.public,
        signature=j.signature,
        model_sha256=j.model_sha256,
    )


def _he_join_from_proto(w: pb.HEJoin) -> HEJoin:
    return HEJoin(
        client=w.client,
        round=w.round,
        public=w.public,
        signature=w.signature,
        model_sha256=w.model_sha256,
    )


def _he_client_to_proto(msg: HEJoin | HEKeyDelivery | HEUpload) -> pb.ClientMessage:
    match msg:
        case HEJoin():
            return pb.ClientMessage(he_join=_he_join_to_proto(msg))
        case HEKeyDelivery():
            return pb.ClientMessage(
                he_key_delivery=pb.HEKeyDelivery(
                    client=msg.client,
                    round=msg.round,
                    public_context=msg.public_context,
                    sealed=[_share_to_proto(s) for s in msg.sealed],
                )
            )
        case HEUpload():
            return pb.ClientMessage(
                he_upload=pb.HEUpload(
                    client=msg.client, round=msg.round, blobs=msg.blobs, signature=msg.signature
                )
            )
        case _:
            assert_never(msg)


def _he_server_to_proto(
    msg: HEStart | HEMaskedStart | HEKeys | HEKeyBundle | HEResult,
) -> pb.ServerMessage:
    match msg:
        case HEMaskedStart():
            return pb.ServerMessage(
                he_masked_start=pb.HEMaskedStart(config=_he_masked_config_to_proto(msg.config))
            )
        case HEStart():
            he_start = pb.HEStart(config=_he_config_to_proto(msg.config))
            if msg.state is not None:
                he_start.state.CopyFrom(method_state_to_proto(msg.state))
            return pb.ServerMessage(he_start=he_start)
        case HEKeys():
            return pb.ServerMessage(
                he_keys=pb.HEKeys(joins=[_he_join_to_proto(j) for j in msg.joins])
            )
        case HEKeyBundle():
            return pb.ServerMessage(he_key_bundle=pb.HEKeyBundle(sealed=msg.sealed))
        case HEResult():
            return pb.ServerMessage(
                he_result=pb.HEResult(blobs=msg.blobs, contributors=msg.contributors)
            )
        case _:
            assert_never(msg)


# ---------------------------------------------------------------- face-FL methods


def _release_to_proto(r: ClusterRelease) -> pb.ClusterRelease:
    return pb.ClusterRelease(
        client=r.client,
        round=r.round,
        dim=r.dim,
        centers=r.centers,
        sizes=r.sizes,
        radii=r.radii,
    )


def _release_from_proto(w: pb.ClusterRelease) -> ClusterRelease:
    """Decode and validate a DP release: bad shapes, NaN or oversize are InvalidMessage."""
    try:
        return ClusterRelease(
            client=w.client,
            round=w.round,
            dim=w.dim,
            centers=w.centers,
            sizes=w.sizes,
            radii=w.radii,
        )
    except ParameterError as exc:
        raise InvalidMessage(f"invalid ClusterRelease: {exc}") from exc


def method_state_to_proto(state: MethodState) -> pb.MethodState:
    """Encode a method state (RoundStart; the aggregator also stores it this way)."""
    try:
        return pb.MethodState(
            method=state.method,
            round=state.round,
            moment=state.moment,
            releases=[_release_to_proto(r) for r in state.releases],
        )
    except ValueError as exc:  # protobuf: an int out of range
        raise InvalidMessage(f"MethodState does not fit the wire schema: {exc}") from exc


def method_state_from_proto(m: pb.MethodState) -> MethodState:
    """Decode and validate a method state; an invalid one is InvalidMessage."""
    releases = tuple(_release_from_proto(r) for r in m.releases)
    try:
        return MethodState(method=m.method, round=m.round, moment=m.moment, releases=releases)
    except ParameterError as exc:
        raise InvalidMessage(f"invalid MethodState: {exc}") from exc
