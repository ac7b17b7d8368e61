"""The client's side of the wire: channel, credentials, retries with backoff and jitter.

Only UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED are retried
(security.md §4.2); everything else is final. Every protocol RPC is
idempotent on the server, so a retry after a lost reply is safe.

With a signing key, every state-changing request (Submit, and the first chunk
of an Upload) is signed (:mod:`protocol.request_auth`) for the round attempt
of the last ``RoundStart`` this transport delivered, with a fresh nonce per
attempt of the call: the server refuses a replayed nonce, never a retry.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc

from protocol.he_messages import AnyClientMessage
from protocol.messages import MaskedInput
from protocol.pki_layout import PkiPaths
from protocol.request_auth import (
    NONCE_BYTES,
    RequestAuth,
    masked_digest,
    sign_message,
    sign_request,
)
from secagg.primitives.signing import SigningKey
from secagg.rng import RandomSource, SystemRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from secagg_pb.v1 import secagg_pb2_grpc as pb_grpc

log = logging.getLogger("secagg.client")
T = TypeVar("T")
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
CHUNK = 4 * 1024 * 1024 - 1024
MAX_MESSAGE = 16 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]


def client_credentials(pki_dir: Path, client_id: int) -> grpc.ChannelCredentials:
    """Mutual TLS: pin the consortium CA, present this client's certificate."""
    paths = PkiPaths(pki_dir)
    own = paths.client(client_id)
    return grpc.ssl_channel_credentials(
        root_certificates=paths.ca_cert.read_bytes(),
        private_key=own.key.read_bytes(),
        certificate_chain=own.cert.read_bytes(),
    )


def open_channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    """A channel to the aggregator (insecure only when no credentials are given)."""
    if credentials is None:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)


class Transport:
    """Stub wrapper: one method per RPC, each with deadlines and bounded retries."""

    def __init__(
        self,
        channel: grpc.Channel,
        client_id: int,
        *,
        attempts: int = 6,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        signing_key: SigningKey | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        self.stub = pb_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
        self.client_id = client_id
        self.signing_key = signing_key
        self._rng = rng or SystemRandomSource()
        #: The round attempt requests are signed for: the nonce of the last RoundStart polled.
        self.session = b""
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._jitter = random.Random()  # noqa: S311 - backoff jitter only, never secrets

    def _retry(self, call: Callable[[], T]) -> T:
        delay = self.base_delay
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code not in RETRYABLE or attempt == self.attempts:
                    raise
                pause = min(self.max_delay, delay) * (0.5 + self._jitter.random())
                log.info("retrying after %s (attempt %d, %.2f s)", code, attempt, pause)
                self._sleep(pause)
                delay *= 2
        raise AssertionError("unreachable")

    def send(self, msg: AnyClientMessage, timeout: float = 60.0) -> None:
        """Submit a protocol message; masked vectors go through the chunked Upload."""
        if isinstance(msg, MaskedInput):
            digest = hashlib.sha256(msg.payload).digest()
            self._retry(lambda: self.stub.Upload(self._chunks(msg, digest), timeout=timeout))
        else:
            # Built per attempt: each one is signed with a fresh nonce.
            self._retry(lambda: self.stub.Submit(self._signed(msg), timeout=timeout))

    def _nonce(self) -> bytes:
        return self._rng.random_bytes(NONCE_BYTES)

    def _signed(self, msg: AnyClientMessage) -> pb.ClientMessage:
        auth = None
        if self.signing_key is not None:
            auth = sign_message(self.signing_key, msg, session=self.session, nonce=self._nonce())
        return codec.signed_client_to_proto(msg, auth)

    def _upload_auth(self, msg: MaskedInput, digest: bytes) -> RequestAuth | None:
        if self.signing_key is None:
            return None
        return sign_request(
            self.signing_key,
            session=self.session,
            nonce=self._nonce(),
            round_=msg.round,
            phase="masked",
            sender=msg.client,
            body=masked_digest(msg.client, msg.round, digest),
        )

    def _chunks(self, msg: MaskedInput, digest: bytes) -> Iterator[pb.UploadChunk]:
        total = len(msg.payload)
        auth = self._upload_auth(msg, digest)
        # A signed upload is named by its signed nonce, so no byte of it is left unsigned.
        upload_id = uuid.uuid4().hex if auth is None else auth.nonce.hex()
        for offset in range(0, max(total, 1), CHUNK):
            first, last = offset == 0, offset + CHUNK >= total
            chunk = pb.UploadChunk(
                client=msg.client,
                round=msg.round,
                upload_id=upload_id,
                offset=offset,
                total_length=total,
                data=msg.payload[offset : offset + CHUNK],
                # Signed uploads declare the digest up front: the signature covers it.
                sha256=digest if last or (first and auth is not None) else b"",
            )
            if first and auth is not None:
                chunk.auth.CopyFrom(codec.auth_to_proto(auth))
            yield chunk

    def poll(self, epoch: int, after: int, timeout: float) -> pb.PollReply:
        """Long-poll for the next message of round attempt ``epoch`` after number ``after``."""
        request = pb.PollRequest(client=self.client_id, epoch=epoch, after=after)
        reply: pb.PollReply = self._retry(lambda: self.stub.Poll(request, timeout=timeout))
        if reply.message.HasField("round_start"):  # a new attempt: sign for it from now on
            self.session = reply.message.round_start.config.nonce
        elif reply.message.HasField("he_start"):  # the same for an HE round
            self.session = reply.message.he_start.config.nonce
        elif reply.message.HasField("he_masked_start"):  # and for a bfv-masked round
            self.session = reply.message.he_masked_start.config.nonce
        return reply

    def model(self, round_: int, timeout: float = 120.0) -> bytes:
        """Download the global model of ``round_``."""

        def fetch() -> bytes:
            buf = bytearray()
            for chunk in self.stub.GetModel(
                pb.ModelRequest(client=self.client_id, round=round_), timeout=timeout
            ):
                if chunk.offset != len(buf):
                    raise ValueError("model chunks out of order")
                buf += chunk.data
            return bytes(buf)

        return self._retry(fetch)
