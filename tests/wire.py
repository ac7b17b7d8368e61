"""Bytes → dataclass decoders that only tests need.

Production decodes client bytes with :func:`secagg_pb.codec.parse_any_client_message`
(the aggregator) and server messages from the ``PollReply`` gRPC already parsed
(the daemon, :func:`secagg_pb.codec.any_server_from_proto`). Tests also
decode SecAgg-only messages and raw server bytes; these helpers wrap the
codec's ``*_from_proto`` with the same rule as production: any failure,
at any layer, is :class:`InvalidMessage`.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from protocol.errors import InvalidMessage
from protocol.he_messages import AnyServerMessage
from protocol.messages import ClientMessage, ServerMessage
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb

_M = TypeVar("_M", bound=Message)


def _wire(cls: type[_M], raw: bytes) -> _M:
    wire = cls()
    try:
        wire.ParseFromString(raw)
    except (DecodeError, ValueError) as exc:
        raise InvalidMessage(f"malformed {cls.__name__}: {exc}") from exc
    return wire


def parse_client_message(raw: bytes) -> ClientMessage:
    """A SecAgg client message from untrusted bytes (HE members are InvalidMessage)."""
    return codec.client_from_proto(_wire(pb.ClientMessage, raw))


def parse_server_message(raw: bytes) -> ServerMessage:
    """A SecAgg server message from untrusted bytes (HE members are InvalidMessage)."""
    return codec.server_from_proto(_wire(pb.ServerMessage, raw))


def parse_any_server_message(raw: bytes) -> AnyServerMessage:
    """Any server message, HE members included, from untrusted bytes."""
    return codec.any_server_from_proto(_wire(pb.ServerMessage, raw))
