"""The gRPC servicer: convert, call the coordinator, map errors to status codes.

Thin by design: every RPC decodes with the codec, identifies the caller from
its certificate (or, in insecure development mode, from the request), calls
the coordinator and maps ``SecAggError`` subclasses to status codes through
one table. No client input can raise past it: anything unexpected becomes
INTERNAL with a generic text, never UNKNOWN.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from aggregator.coordinator import Coordinator
from protocol.errors import AuthenticationFailed, InvalidMessage, ProtocolError
from protocol.messages import MaskedInput
from protocol.roster import Roster
from secagg.errors import SecAggError
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from secagg_pb.v1 import secagg_pb2_grpc as pb_grpc

log = logging.getLogger("secagg.aggregator")
T = TypeVar("T")

MAX_CHUNK = 4 * 1024 * 1024
MODEL_CHUNK = 1024 * 1024


def status_of(exc: SecAggError) -> grpc.StatusCode:
    """The one error → status table (security.md §4.2)."""
    if isinstance(exc, ProtocolError):
        return grpc.StatusCode[exc.status]
    return grpc.StatusCode.INVALID_ARGUMENT


class AggregatorServicer(pb_grpc.AggregatorServicer):
    """Implements secagg.v1.Aggregator over a :class:`Coordinator`."""

    def __init__(
        self,
        coordinator: Coordinator,
        identify: Callable[[grpc.ServicerContext, int], int],
        *,
        max_payload: int,
    ) -> None:
        self.coordinator = coordinator
        self.identify = identify
        self.max_payload = max_payload
        #: Set once the stored state is replayed; until then every call gets UNAVAILABLE.
        self.ready = threading.Event()

    def _guard(self, context: grpc.ServicerContext, call: Callable[[], T]) -> T:
        if not self.ready.is_set():  # recovering: come back later (§4.2), not a final refusal
            context.abort(grpc.StatusCode.UNAVAILABLE, "the aggregator is recovering its state")
        try:
            return call()
        except SecAggError as exc:
            context.abort(status_of(exc), str(exc)[:500])
        except Exception:  # never let client input surface as UNKNOWN
            log.exception("internal error while handling a request")
            context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable")  # context.abort raises

    def Submit(self, request: pb.ClientMessage, context: grpc.ServicerContext) -> pb.Ack:
        def run() -> pb.Ack:
            msg = codec.client_from_proto(request)
            client = self.identify(context, msg.client)
            self.coordinator.submit(client, msg)
            return pb.Ack(status="accepted")

        return self._guard(context, run)

    def Upload(
        self, request_iterator: Iterator[pb.UploadChunk], context: grpc.ServicerContext
    ) -> pb.Ack:
        def run() -> pb.Ack:
            first: pb.UploadChunk | None = None
            buf = bytearray()
            digest = b""
            for chunk in request_iterator:
                if first is None:
                    first = chunk
                    if chunk.total_length > self.max_payload:
                        raise InvalidMessage(
                            f"upload of {chunk.total_length} bytes exceeds the cap"
                        )
                if (chunk.upload_id, chunk.client, chunk.round, chunk.total_length) != (
                    first.upload_id,
                    first.client,
                    first.round,
                    first.total_length,
                ):
                    raise InvalidMessage(
                        "chunks of one upload must agree on id, client, round, length"
                    )
                if len(chunk.data) > MAX_CHUNK:
                    raise InvalidMessage("chunk larger than 4 MiB")
                if chunk.offset != len(buf):
                    raise InvalidMessage(f"chunk at offset {chunk.offset}, expected {len(buf)}")
                if len(buf) + len(chunk.data) > first.total_length:
                    raise InvalidMessage("upload longer than its declared length")
                buf += chunk.data
                digest = chunk.sha256 or digest
            if first is None:
                raise InvalidMessage("empty upload")
            if len(buf) != first.total_length:
                raise InvalidMessage("upload ended before its declared length")
            if hashlib.sha256(buf).digest() != digest:
                raise InvalidMessage("upload digest mismatch")
            client = self.identify(context, first.client)
            self.coordinator.submit(client, MaskedInput(first.client, first.round, bytes(buf)))
            return pb.Ack(status="accepted")

        return self._guard(context, run)

    def Poll(self, request: pb.PollRequest, context: grpc.ServicerContext) -> pb.PollReply:
        def run() -> pb.PollReply:
            client = self.identify(context, request.client)
            wait = self.coordinator.settings.poll_wait_s
            remaining = context.time_remaining()
            if remaining is not None:
                wait = max(0.0, min(wait, remaining - 0.5))
            epoch, seq, msg, finished = self.coordinator.poll(
                client, request.epoch, request.after, wait
            )
            reply = pb.PollReply(epoch=epoch, seq=seq, finished=finished)
            if msg is not None:
                reply.message.CopyFrom(codec.server_to_proto(msg))
            return reply

        return self._guard(context, run)

    def GetModel(
        self, request: pb.ModelRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ModelChunk]:
        data = self._guard(
            context,
            lambda: (
                self.identify(context, request.client),
                self.coordinator.model_bytes(request.round),
            )[1],
        )
        for offset in range(0, max(len(data), 1), MODEL_CHUNK):
            yield pb.ModelChunk(
                round=request.round,
                offset=offset,
                total_length=len(data),
                data=data[offset : offset + MODEL_CHUNK],
            )


def insecure_identity(context: grpc.ServicerContext, claimed: int) -> int:
    """Development mode only: trust the id the request claims."""
    del context
    return claimed


def certificate_identity(roster: Roster) -> Callable[[grpc.ServicerContext, int], int]:
    """Identity from the mTLS certificate, checked against the roster.

    The certificate must be the one enrolled for that id (its SHA-256), and a
    request claiming another id is refused.
    """
    from aggregator.tls import peer_identity

    def identify(context: grpc.ServicerContext, claimed: int) -> int:
        peer = peer_identity(context)
        roster.authenticate(peer.client_id, cert_sha256=peer.cert_sha256)
        if claimed and claimed != peer.client_id:
            raise AuthenticationFailed(
                f"certificate is client {peer.client_id}, request claims {claimed}"
            )
        return peer.client_id

    return identify
