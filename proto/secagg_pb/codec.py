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
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShare,
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
from secagg_pb.v1 import secagg_pb2 as pb

__all__ = [
    "client_from_proto",
    "client_to_proto",
    "config_from_proto",
    "config_to_proto",
    "parse_client_message",
    "parse_server_message",
    "server_from_proto",
    "server_to_proto",
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


def client_to_proto(msg: ClientMessage) -> pb.ClientMessage:
    """Wrap a client dataclass in the ``ClientMessage`` oneof."""
    try:
        return _client_to_proto(msg)
    except ValueError as exc:  # protobuf: int out of range, str not encodable as UTF-8
        raise InvalidMessage(f"{type(msg).__name__} does not fit the wire schema: {exc}") from exc


def client_from_proto(m: pb.ClientMessage) -> ClientMessage:
    """Unwrap the oneof; an empty (or unknown) one is InvalidMessage."""
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
        case None:
            raise InvalidMessage("ClientMessage carries no message (empty oneof)")
        case other:
            raise InvalidMessage(f"ClientMessage of unsupported kind {type(other).__name__}")


def parse_client_message(raw: bytes) -> ClientMessage:
    """Parse untrusted bytes; every failure, at any layer, is InvalidMessage."""
    wire = pb.ClientMessage()
    try:
        wire.ParseFromString(raw)
    except (DecodeError, ValueError) as exc:
        raise InvalidMessage(f"malformed ClientMessage: {exc}") from exc
    return client_from_proto(wire)


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
        case _:
            assert_never(msg)


# ---------------------------------------------------------------- server → client


def server_to_proto(msg: ServerMessage) -> pb.ServerMessage:
    """Wrap a server dataclass in the ``ServerMessage`` oneof."""
    try:
        return _server_to_proto(msg)
    except ValueError as exc:  # protobuf: int out of range, str not encodable as UTF-8
        raise InvalidMessage(f"{type(msg).__name__} does not fit the wire schema: {exc}") from exc


def server_from_proto(m: pb.ServerMessage) -> ServerMessage:
    """Unwrap the oneof; an empty one, or an invalid round config, is InvalidMessage."""
    match _oneof_value(m):
        case pb.RoundStart() as w:
            return RoundStart(config=config_from_proto(w.config))
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
        case None:
            raise InvalidMessage("ServerMessage carries no message (empty oneof)")
        case other:
            raise InvalidMessage(f"ServerMessage of unsupported kind {type(other).__name__}")


def parse_server_message(raw: bytes) -> ServerMessage:
    """Parse untrusted bytes; every failure, at any layer, is InvalidMessage."""
    wire = pb.ServerMessage()
    try:
        wire.ParseFromString(raw)
    except (DecodeError, ValueError) as exc:
        raise InvalidMessage(f"malformed ServerMessage: {exc}") from exc
    return server_from_proto(wire)


def _server_to_proto(msg: ServerMessage) -> pb.ServerMessage:
    match msg:
        case RoundStart():
            return pb.ServerMessage(round_start=pb.RoundStart(config=_config_to_proto(msg.config)))
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
        case _:
            assert_never(msg)


# ---------------------------------------------------------------- shared parts


def _oneof_value(m: pb.ClientMessage | pb.ServerMessage) -> object | None:
    """The one submessage set in a wrapper, or None.

    The wrappers hold nothing but their ``kind`` oneof, and each member has its
    own message type, so the callers dispatch on the type and need no field
    names. A member set to an empty submessage still counts as set.
    """
    present = m.ListFields()
    return present[0][1] if present else None


def _advertise_to_proto(a: AdvertiseKeys) -> pb.AdvertiseKeys:
    return pb.AdvertiseKeys(
        client=a.client,
        round=a.round,
        c_public=a.c_public,
        s_public=a.s_public,
        signature=a.signature,
    )


def _advertise_from_proto(w: pb.AdvertiseKeys) -> AdvertiseKeys:
    return AdvertiseKeys(
        client=w.client,
        round=w.round,
        c_public=w.c_public,
        s_public=w.s_public,
        signature=w.signature,
    )


def _share_to_proto(s: EncryptedShare) -> pb.EncryptedShare:
    return pb.EncryptedShare(sender=s.sender, recipient=s.recipient, ciphertext=s.ciphertext)


def _share_from_proto(w: pb.EncryptedShare) -> EncryptedShare:
    return EncryptedShare(sender=w.sender, recipient=w.recipient, ciphertext=w.ciphertext)


def _owned_from_proto(w: pb.OwnedShare) -> tuple[int, bytes]:
    return (w.owner, w.share)


def _signed_from_proto(w: pb.SignedBy) -> tuple[int, bytes]:
    return (w.client, w.signature)
