"""The gRPC servicer: convert, call the coordinator, map errors to status codes.

Thin by design: every RPC decodes with the codec, identifies the caller from
its certificate (or, in insecure development mode, from the request), calls
the coordinator and maps ``SecAggError`` subclasses to status codes through
one table. No client input can raise past it: anything unexpected becomes
INTERNAL with a generic text, never UNKNOWN.

Every call is admitted per identity (:mod:`aggregator.ratelimit`) right after
the caller is identified and checked against the roster, and before it
touches any round state; an Upload is also charged its declared length
against the caller's byte budget once its signature is checked, before
anything is spooled.

State-changing requests (Submit, Upload) must carry a request signature
(:mod:`protocol.request_auth`) by the caller's roster key whenever the roster
holds signing keys (always with a PKI; only development without one has
none). It is verified before anything else looks at the request's content,
an Upload's on its first chunk; a bad or missing one is UNAUTHENTICATED. The
coordinator then refuses, under its lock, a request signed for another round
attempt or with a nonce already used in this one (FAILED_PRECONDITION).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from aggregator.coordinator import Coordinator
from aggregator.diskfull import DiskFull, is_disk_full
from aggregator.ratelimit import Admission, Limits, RateLimited
from aggregator.spool import SpooledPayload
from aggregator.streams import Progress, StreamCancelled, StreamWatchdog, UploadSlots
from protocol.errors import AuthenticationFailed, InvalidMessage, ProtocolError, UnknownClient
from protocol.he_messages import AnyClientMessage
from protocol.request_auth import (
    RequestAuth,
    body_digest,
    masked_digest,
    phase_of,
    verify_request,
)
from protocol.roster import Roster
from secagg.errors import SecAggError
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from secagg_pb.v1 import secagg_pb2_grpc as pb_grpc

log = logging.getLogger("secagg.aggregator")
T = TypeVar("T")
M = TypeVar("M", bound=Message)
SERVICE = "secagg.v1.Aggregator"

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
        admission: Admission | None = None,
        spool_dir: Path | None = None,
        watchdog: StreamWatchdog | None = None,
        upload_slots: UploadSlots | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.identify = identify
        self.max_payload = max_payload
        #: Where uploads are spooled while they stream in (None: the system temp folder).
        self.spool_dir = spool_dir
        self.admission = admission or Admission(Limits(rate=0, burst=0, max_inflight=0))
        #: Cuts uploads that stall (no chunk for the idle timeout) or run too long.
        self.watchdog = watchdog or StreamWatchdog(idle_s=0, total_s=0)
        self.upload_slots = upload_slots or UploadSlots(total=0, per_client=0)
        #: Disk-full refusals (ENOSPC, SQLite's "disk is full"): /status and /metrics.
        self.disk = DiskFull(coordinator.metrics)
        #: Refusals by status code since the last summary line (server.py logs one a minute).
        self.refusals: dict[str, int] = {}
        self._refusals_lock = threading.Lock()
        #: Request bodies that did not parse (also ``secagg_undecodable_total``).
        self.undecodable = 0
        #: Set once the stored state is replayed; until then every call gets UNAVAILABLE.
        self.ready = threading.Event()

    def _guard(self, context: grpc.ServicerContext, call: Callable[[], T]) -> T:
        if not self.ready.is_set():  # recovering: come back later (§4.2), not a final refusal
            context.abort(grpc.StatusCode.UNAVAILABLE, "the aggregator is recovering its state")
        try:
            return call()
        except SecAggError as exc:
            self._refused(status_of(exc).name)
            if isinstance(exc, RateLimited):
                self.coordinator.metrics.throttled.inc()
            if isinstance(exc, StreamCancelled):  # the client went away: nothing to answer
                log.debug("stream cancelled by the client")
            context.abort(status_of(exc), str(exc)[:500])
        except Exception as exc:  # never let client input surface as UNKNOWN
            if is_disk_full(exc):  # retryable: daemons back off and send it again
                self.disk.record(exc)
                self._refused("DISK_FULL")
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, "the aggregator's disk is full; retry later"
                )
            log.exception("internal error while handling a request")
            context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable")  # context.abort raises

    # ------------------------------------------------- bodies parsed here, not by grpcio

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """The service's method handlers, taking raw bytes; register with :func:`register`.

        grpcio's sync server, when a request does not deserialize, logs a
        traceback, answers INTERNAL and leaks ~13 KB per request (measured:
        +263 MB over 20,000 bodies, 115,000 log lines), all before any
        handler, so neither the rate limiter nor the metrics ever see it.
        Parsing here puts undecodable bodies under the same admission as
        every other call: INVALID_ARGUMENT, counted, rate limited per
        identity wherever the certificate names the caller.
        """
        ack = pb.Ack.SerializeToString

        def submit(raw: bytes, context: grpc.ServicerContext) -> pb.Ack:
            return self.Submit(self._decoded(pb.ClientMessage, raw, context), context)

        def upload(raws: Iterator[bytes], context: grpc.ServicerContext) -> pb.Ack:
            return self.Upload((self._parse(pb.UploadChunk, raw) for raw in raws), context)

        def poll(raw: bytes, context: grpc.ServicerContext) -> pb.PollReply:
            return self.Poll(self._decoded(pb.PollRequest, raw, context), context)

        def get_model(raw: bytes, context: grpc.ServicerContext) -> Iterator[pb.ModelChunk]:
            yield from self.GetModel(self._decoded(pb.ModelRequest, raw, context), context)

        return {
            "Submit": grpc.unary_unary_rpc_method_handler(
                submit, request_deserializer=_bytes, response_serializer=ack
            ),
            "Upload": grpc.stream_unary_rpc_method_handler(
                upload, request_deserializer=_bytes, response_serializer=ack
            ),
            "Poll": grpc.unary_unary_rpc_method_handler(
                poll,
                request_deserializer=_bytes,
                response_serializer=pb.PollReply.SerializeToString,
            ),
            "GetModel": grpc.unary_stream_rpc_method_handler(
                get_model,
                request_deserializer=_bytes,
                response_serializer=pb.ModelChunk.SerializeToString,
            ),
        }

    def register(self, server: grpc.Server) -> None:
        """Serve ``secagg.v1.Aggregator`` from :meth:`handlers` on ``server``."""
        handlers = self.handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_registered_method_handlers(SERVICE, handlers)

    @staticmethod
    def _parse(cls: type[M], raw: bytes) -> M:
        try:
            return cls.FromString(raw)
        except DecodeError:
            raise InvalidMessage(f"request body is not a valid {cls.__name__}") from None

    def _decoded(self, cls: type[M], raw: bytes, context: grpc.ServicerContext) -> M:
        """``raw`` parsed as ``cls``; else the call is charged, counted and refused."""

        def parse() -> M:
            try:
                return cls.FromString(raw)
            except DecodeError:
                pass
            self.undecodable += 1
            self.coordinator.metrics.undecodable.inc()
            client = self.identify(context, 0)  # the certificate's; 0 in development mode
            if client:
                with self.admission.admit(self._caller(context, client)):
                    pass  # takes a token like any call: a flood of them is RESOURCE_EXHAUSTED
            raise InvalidMessage(f"request body is not a valid {cls.__name__}")

        return self._guard(context, parse)

    def _refused(self, code: str) -> None:
        """Count one refusal: secagg_refused_total{code} and the periodic summary line."""
        self.coordinator.metrics.refused.labels(code).inc()
        with self._refusals_lock:
            self.refusals[code] = self.refusals.get(code, 0) + 1

    def refusal_summary(self) -> str | None:
        """One line of the refusals since the last call, or None if there were none."""
        with self._refusals_lock:
            counts, self.refusals = self.refusals, {}
        if not counts:
            return None
        return ", ".join(f"{n} {code}" for code, n in sorted(counts.items()))

    def _caller(self, context: grpc.ServicerContext, claimed: int) -> int:
        """The authenticated caller's roster id (its certificate's, in production)."""
        client = self.identify(context, claimed)
        if client not in self.coordinator.roster:
            raise UnknownClient(f"client {client} is not on the roster")
        return client

    def _authenticate(
        self, client: int, auth: RequestAuth | None, *, round_: int, phase: str, body: bytes
    ) -> RequestAuth | None:
        """Verify the request signature by ``client``'s roster key; None when there are no keys."""
        key = self.coordinator.roster.get(client, b"")
        if not key:  # development without a PKI: nothing to verify against
            return None
        if auth is None:
            raise AuthenticationFailed("request is not signed")
        verify_request(key, auth, round_=round_, phase=phase, sender=client, body=body)
        return auth

    def _submit(self, client: int, msg: AnyClientMessage, auth: RequestAuth | None) -> None:
        if auth is None:
            self.coordinator.submit(client, msg)
        else:
            self.coordinator.submit(client, msg, session=auth.session, nonce=auth.nonce)

    def Submit(self, request: pb.ClientMessage, context: grpc.ServicerContext) -> pb.Ack:
        def run() -> pb.Ack:
            msg = codec.any_client_from_proto(request)  # SecAgg's messages or an HE round's
            client = self._caller(context, msg.client)
            with self.admission.admit(client):
                auth = self._authenticate(
                    client,
                    codec.auth_from_proto(request),
                    round_=msg.round,
                    phase=phase_of(msg),
                    body=body_digest(msg),
                )
                self._submit(client, msg, auth)
            return pb.Ack(status="accepted")

        return self._guard(context, run)

    def Upload(
        self, request_iterator: Iterator[pb.UploadChunk], context: grpc.ServicerContext
    ) -> pb.Ack:
        def run() -> pb.Ack:
            # Slots before anything is read, so stalled streams never hold more than the
            # caps: the total at once, the caller's own too where its certificate names it.
            with self.upload_slots.any(), self.watchdog.watch(context) as progress:
                early = self.identify(context, 0)  # 0 in insecure mode: not known yet
                if early:  # admitted like any call, then refused at once outside the cohort
                    with self.admission.admit(self._caller(context, early)):
                        self.coordinator.check_upload(early, None, None)
                        with self.upload_slots.client(early):
                            return upload(progress, early)
                return upload(progress, None)

        def upload(progress: Progress, early: int | None) -> pb.Ack:
            chunks = iter(request_iterator)
            first = progress.next(chunks)
            if first is None:
                raise InvalidMessage("empty upload")
            assert isinstance(first, pb.UploadChunk)
            # Identify and admit on the first chunk, before reading any more of the stream
            # (over mTLS the caller was admitted before it, from its certificate).
            client = self._caller(context, first.client)
            admitted = self.admission.admit(client) if early is None else nullcontext()
            slot = self.upload_slots.client(client) if early is None else nullcontext()
            with admitted, slot:
                # A signed upload declares its digest on the first chunk; the signature
                # covers it, so it is checked before the rest of the stream is read.
                auth = self._authenticate(
                    client,
                    codec.auth_from_proto(first),
                    round_=first.round,
                    phase="masked",
                    body=masked_digest(first.client, first.round, first.sha256),
                )
                if auth is not None and first.upload_id != auth.nonce.hex():
                    raise AuthenticationFailed("a signed upload's id must be its signed nonce")
                if first.total_length <= self.max_payload:  # a larger one is refused below
                    self.admission.charge_bytes(client, first.total_length)  # before spooling
                # ... and for the running attempt, its sender in the cohort: a stale or
                # foreign upload is refused now, not after its whole stream is read.
                self.coordinator.check_upload(
                    client, first.round, None if auth is None else auth.session
                )
                with SpooledPayload(self.spool_dir) as payload:
                    self._receive(
                        first, chunks, payload, signed=auth is not None, progress=progress
                    )
                    if auth is None:
                        self.coordinator.submit_masked(client, first.round, payload)
                    else:
                        self.coordinator.submit_masked(
                            client, first.round, payload, session=auth.session, nonce=auth.nonce
                        )
            return pb.Ack(status="accepted")

        return self._guard(context, run)

    def _receive(
        self,
        first: pb.UploadChunk,
        rest: Iterator[pb.UploadChunk],
        payload: SpooledPayload,
        *,
        signed: bool,
        progress: Progress | None = None,
    ) -> None:
        """Spool one upload chunk by chunk, checking its framing and digest (the signed one)."""
        if first.total_length > self.max_payload:
            raise InvalidMessage(f"upload of {first.total_length} bytes exceeds the cap")
        digest = b""
        for chunk in itertools.chain([first], _chunks(rest, progress)):
            if (chunk.upload_id, chunk.client, chunk.round, chunk.total_length) != (
                first.upload_id,
                first.client,
                first.round,
                first.total_length,
            ):
                raise InvalidMessage("chunks of one upload must agree on id, client, round, length")
            data = chunk.data  # one copy out of the message, then straight to disk
            if len(data) > MAX_CHUNK:
                raise InvalidMessage("chunk larger than 4 MiB")
            if chunk.offset != payload.length:
                raise InvalidMessage(f"chunk at offset {chunk.offset}, expected {payload.length}")
            if payload.length + len(data) > first.total_length:
                raise InvalidMessage("upload longer than its declared length")
            payload.write(data)
            digest = chunk.sha256 or digest
        if payload.length != first.total_length:
            raise InvalidMessage("upload ended before its declared length")
        actual = payload.sha256
        if actual != digest or (signed and actual != first.sha256):
            raise InvalidMessage("upload digest mismatch")

    def Poll(self, request: pb.PollRequest, context: grpc.ServicerContext) -> pb.PollReply:
        def run() -> pb.PollReply:
            client = self._caller(context, request.client)
            wait = self.coordinator.settings.poll_wait_s
            remaining = context.time_remaining()
            if remaining is not None:
                wait = max(0.0, min(wait, remaining - 0.5))
            with self.admission.admit(client):
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
        def run() -> bytes:
            client = self._caller(context, request.client)
            with self.admission.admit(client):
                return self.coordinator.model_bytes(request.round)

        data = self._guard(context, run)
        # A client that stops reading blocks the send: the watchdog cuts it like a stalled
        # upload (no chunk taken for the idle timeout), so it cannot hold the worker.
        with self.watchdog.watch(context) as progress:
            for offset in range(0, max(len(data), 1), MODEL_CHUNK):
                yield pb.ModelChunk(
                    round=request.round,
                    offset=offset,
                    total_length=len(data),
                    data=data[offset : offset + MODEL_CHUNK],
                )
                progress.touch()


def _chunks(rest: Iterator[pb.UploadChunk], progress: Progress | None) -> Iterator[pb.UploadChunk]:
    """The rest of an upload, each chunk recorded as progress (a cut stream raises)."""
    if progress is None:
        yield from rest
        return
    while (chunk := progress.next(rest)) is not None:
        assert isinstance(chunk, pb.UploadChunk)
        yield chunk


def _bytes(data: bytes) -> bytes:
    return data


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
