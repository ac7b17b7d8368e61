"""Robustness of the live aggregator service (security.md §6 E and F: T30, T32–T34, T41, T42).

Most tests run an :class:`AggregatorServer` in this process (insecure mode,
semi-honest profile, a roster of clients 1–3) and talk to it through a real
loopback gRPC channel, so they can look at the coordinator and the store
directly. Honest clients are driven by hand (:class:`HonestCohort`: one
``ClientMachine`` each, the production ``Transport`` for sending), which lets a
test act between two protocol phases. T41 starts the real CLI as a subprocess.

Codes observed (grpcio 1.85.3, protobuf upb):

- schema-valid fuzz (T30): only application codes from §4.2, never UNKNOWN or INTERNAL;
- a message over 16 MiB, unary or one stream chunk: RESOURCE_EXHAUSTED from the library;
- an Upload chunk over 4 MiB (under 16 MiB) and every framing error: INVALID_ARGUMENT (ours);
- unparsable bytes (T33): INVALID_ARGUMENT from the servicer, which parses bodies itself
  (grpcio's own parse failure was INTERNAL, a traceback and a leak per request; issue 15);
  parsable bytes without a message: INVALID_ARGUMENT;
- a Poll whose deadline is shorter than the server's wait (T34): OK with no message,
  answered at once, because the servicer caps its wait at the deadline minus 0.5 s;
- any call while the stored state is replayed (T42): UNAVAILABLE.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from aggregator.server import MAX_MESSAGE, SERVICE, AggregatorServer
from aggregator.servicer import MAX_CHUNK
from aggregator.settings import AggregatorSettings
from clients.lab.cluster import child_env
from clients.training.synthetic import exact_levels
from clients.transport import Transport
from protocol.client import ClientMachine
from protocol.he_model import model_sha256
from protocol.messages import ClientMessage, MaskedInput, RoundStart, ServerMessage
from protocol.policy import ClientPolicy
from protocol.session import SHARE_CIPHERTEXT_BYTES
from secagg.packing import packed_size
from secagg.rng import DeterministicRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from secagg_pb.v1 import secagg_pb2_grpc as pb_grpc
from tests.integration.harness import SECAGG, expected_sha256, wait_for

pytestmark = pytest.mark.integration

DIM = 16
LEVELS = 1 << 16
ROSTER = (1, 2, 3)
MIB = 1 << 20
CAP = (DIM + 1) * 8 + 1024  # the servicer's upload cap for DIM
SUBMIT = "/secagg.v1.Aggregator/Submit"
PARSE_ERROR = "request body is not a valid ClientMessage"
Code = grpc.StatusCode
ALLOWED = frozenset(
    {
        Code.INVALID_ARGUMENT,
        Code.FAILED_PRECONDITION,
        Code.ALREADY_EXISTS,
        Code.UNAUTHENTICATED,
        Code.PERMISSION_DENIED,
        Code.RESOURCE_EXHAUSTED,
        Code.ABORTED,
        Code.UNAVAILABLE,
        Code.DEADLINE_EXCEEDED,
    }
)


# ---------------------------------------------------------------- live server


@dataclass
class Live:
    """An in-process aggregator and a channel to it."""

    server: AggregatorServer
    channel: grpc.Channel
    stub: pb_grpc.AggregatorStub
    health: health_pb2_grpc.HealthStub
    stopped: bool = False

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.channel.close()
            self.server.stop(0)

    def health_status(self, service: str = SERVICE) -> int:
        reply = self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(reply.status)


Factory = Callable[..., Live]


def _connect(server: AggregatorServer) -> Live:
    # No client-side size limits: the server's limits are what is under test.
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}",
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    return Live(
        server,
        channel,
        pb_grpc.AggregatorStub(channel),  # type: ignore[no-untyped-call]
        health_pb2_grpc.HealthStub(channel),
    )


@pytest.fixture
def make_live(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Factory]:
    """Builds servers (``start=False`` leaves starting to the test); stops them all at the end.

    Afterwards no ERROR may have been logged by the aggregator: neither the
    servicer's "internal error" nor a crash of the round driver.
    """
    caplog.set_level(logging.WARNING, logger="secagg")
    made: list[Live] = []

    def make(*, state: str = "state", start: bool = True, **overrides: Any) -> Live:
        options: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "insecure": True,
            "profile": "semi-honest",
            "state_dir": str(tmp_path / state),
            "dim": DIM,
            "rounds": 3,
            "poll_wait_s": 0.5,
            "phase_timeout_s": 30.0,
            "max_workers": 8,
        }
        options.update(overrides)
        live = _connect(AggregatorServer(AggregatorSettings(**options), clients=len(ROSTER)))
        made.append(live)
        if start:
            live.server.start()
        return live

    yield make
    for live in made:
        live.stop()
    errors = [
        r for r in caplog.records if r.name.startswith("secagg") and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """(status code, details) of one call; OK when it returned."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return Code.OK, ""


# ---------------------------------------------------------------- honest clients by hand


SEMI_HONEST_LAB = ClientPolicy(colluders=0).with_opt_in("semi-honest")


@dataclass
class HonestCohort:
    """Clients 1–3 driven phase by phase, so a test can act between two phases."""

    live: Live
    machines: dict[int, ClientMachine] = field(default_factory=dict)
    epoch: dict[int, int] = field(default_factory=dict)
    after: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for c in ROSTER:
            rng = DeterministicRandomSource(f"robustness-{c}")
            # The test server runs semi-honest rounds without a roster: the clients opt in.
            self.machines[c] = ClientMachine(c, rng=rng, policy=SEMI_HONEST_LAB)
            self.epoch[c] = self.after[c] = 0

    def next_messages(self, clients: tuple[int, ...] = ROSTER) -> dict[int, ServerMessage]:
        """Long-poll ``clients`` concurrently until each has its next server message."""
        got: dict[int, ServerMessage] = {}
        end = time.monotonic() + 20
        while len(got) < len(clients):
            assert time.monotonic() < end, f"no message for {set(clients) - set(got)}"
            pending = {
                c: self.live.stub.Poll.future(
                    pb.PollRequest(client=c, epoch=self.epoch[c], after=self.after[c]), timeout=2.0
                )
                for c in clients
                if c not in got
            }
            for c, call in pending.items():
                reply = call.result()
                if reply.HasField("message"):
                    self.epoch[c], self.after[c] = reply.epoch, reply.seq
                    got[c] = codec.server_from_proto(reply.message)
        return got

    def answer(self, messages: dict[int, ServerMessage]) -> dict[int, list[ClientMessage]]:
        """Each machine's replies (on RoundStart: download the model and fix the input first)."""
        replies: dict[int, list[ClientMessage]] = {}
        for c, msg in messages.items():
            machine = self.machines[c]
            if isinstance(msg, RoundStart):
                raw = b"".join(
                    chunk.data
                    for chunk in self.live.stub.GetModel(
                        pb.ModelRequest(client=c, round=msg.config.round), timeout=5
                    )
                )
                levels = exact_levels(c, msg.config.round, DIM, LEVELS)
                machine.set_levels(levels, weight=1, model_hash=model_sha256(raw))
            replies[c] = machine.handle(msg)
        return replies

    def send(self, replies: dict[int, list[ClientMessage]]) -> None:
        for c, messages in replies.items():
            transport = Transport(self.live.channel, c, attempts=1)
            for msg in messages:
                transport.send(msg, timeout=10)

    def step(self, clients: tuple[int, ...] = ROSTER) -> dict[int, list[ClientMessage]]:
        """Poll, answer and send one phase; returns what was sent."""
        replies = self.answer(self.next_messages(clients))
        self.send(replies)
        return replies


def start_round(live: Live) -> tuple[HonestCohort, dict[int, ServerMessage]]:
    """Make every roster client present so the driver starts round 0.

    Returns the cohort and the RoundStart each client received (not yet answered).
    """
    cohort = HonestCohort(live)
    messages = cohort.next_messages()
    assert all(isinstance(m, RoundStart) for m in messages.values())
    return cohort, messages


def healthy(live: Live) -> None:
    """The server answers health checks SERVING and its round driver is alive."""
    assert live.health_status() == health_pb2.HealthCheckResponse.SERVING
    assert live.health_status("") == health_pb2.HealthCheckResponse.SERVING
    assert live.server._driver.is_alive()
    live.server.coordinator.status()  # the coordinator lock is not stuck


# ---------------------------------------------------------------- T30 structured fuzzing

U64_EDGES = [0, 1, 2, 3, 4, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
u64 = st.one_of(st.sampled_from(U64_EDGES), st.integers(0, 2**64 - 1))
client_ids = st.one_of(st.sampled_from(ROSTER), u64)  # half roster ids: they reach the machine
rounds = st.one_of(st.just(0), u64)
texts = st.one_of(st.text(max_size=64), st.integers(0, 1 << 20).map(lambda n: "é" * n))


def blobs(*sizes: int, huge: int = 0) -> st.SearchStrategy[bytes]:
    """Random bytes, bytes of the sizes the protocol expects, or a zero run of up to ``huge``."""
    options = [st.binary(max_size=80), *(st.binary(min_size=n, max_size=n) for n in sizes)]
    if huge:
        options.append(st.integers(0, huge).map(bytes))
    return st.one_of(*options)


def repeated(element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """A few random elements, or one element repeated up to 20 000 times.

    Elements stay small (no ``huge`` blobs), so a message stays a few MiB at most.
    """
    many = st.tuples(element, st.integers(0, 20_000)).map(lambda t: [t[0]] * t[1])
    return st.one_of(st.lists(element, max_size=4), many)


def client_messages(payload_size: int) -> st.SearchStrategy[pb.ClientMessage]:
    """Schema-valid ClientMessages of every oneof kind, plus the empty one."""
    share = st.builds(
        pb.EncryptedShare,
        sender=client_ids,
        recipient=client_ids,
        ciphertext=blobs(SHARE_CIPHERTEXT_BYTES),
    )
    owned = st.builds(pb.OwnedShare, owner=client_ids, share=blobs(64))
    kinds = [
        st.builds(
            pb.AdvertiseKeys,
            client=client_ids,
            round=rounds,
            c_public=blobs(32, huge=MIB),
            s_public=blobs(32),
            signature=st.one_of(st.just(b""), blobs(64)),
        ).map(lambda m: pb.ClientMessage(advertise_keys=m)),
        st.builds(
            pb.ShareKeys,
            client=client_ids,
            round=rounds,
            shares=repeated(share),
            self_mask_commitment=blobs(32, huge=MIB),
            signature=st.one_of(st.just(b""), blobs(64)),
        ).map(lambda m: pb.ClientMessage(share_keys=m)),
        st.builds(
            pb.MaskedInput,
            client=client_ids,
            round=rounds,
            payload=blobs(payload_size, huge=17 * MIB),
        ).map(lambda m: pb.ClientMessage(masked_input=m)),
        st.builds(
            pb.ConsistencySignature, client=client_ids, round=rounds, signature=blobs(64, huge=MIB)
        ).map(lambda m: pb.ClientMessage(consistency_signature=m)),
        st.builds(
            pb.UnmaskShares,
            client=client_ids,
            round=rounds,
            self_mask_shares=repeated(owned),
            key_shares=repeated(owned),
        ).map(lambda m: pb.ClientMessage(unmask_shares=m)),
        st.builds(pb.ClientAbort, client=client_ids, round=rounds, reason=texts).map(
            lambda m: pb.ClientMessage(abort=m)
        ),
        st.just(pb.ClientMessage()),
    ]
    return st.one_of(*kinds)


def upload_streams(payload_size: int) -> st.SearchStrategy[list[pb.UploadChunk]]:
    chunk = st.builds(
        pb.UploadChunk,
        client=client_ids,
        round=rounds,
        upload_id=texts,
        offset=st.one_of(st.just(0), u64),
        total_length=st.one_of(st.just(payload_size), u64),
        data=blobs(payload_size, huge=5 * MIB),
        sha256=st.one_of(st.just(b""), blobs(32)),
    )
    return st.lists(chunk, max_size=4)


FUZZ = hsettings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_t30_structured_fuzzing_gets_only_allowed_codes(make_live: Factory) -> None:
    """T30: schema-valid messages on every RPC; application codes only; healthy afterwards."""
    live = make_live()
    start_round(live)  # the round runs; the fuzz plays all three roster clients from here on
    machine = live.server.coordinator.machine
    assert machine is not None
    payload_size = packed_size(machine.config.vector_length, machine.config.modulus_bits)
    seen: dict[str, set[grpc.StatusCode]] = {"Submit": set(), "Upload": set(), "Poll": set()}
    # Poll also collects GetModel.

    def check(rpc: str, code: grpc.StatusCode, details: str) -> None:
        seen[rpc].add(code)
        assert code is Code.OK or code in ALLOWED, (rpc, code, details)

    share = pb.EncryptedShare(sender=1, recipient=2, ciphertext=bytes(SHARE_CIPHERTEXT_BYTES))
    owned = pb.OwnedShare(owner=2**64 - 1, share=bytes(64))

    @FUZZ
    @given(msg=client_messages(payload_size))
    @example(pb.ClientMessage(share_keys=pb.ShareKeys(client=1, shares=[share] * 20_000)))
    @example(pb.ClientMessage(unmask_shares=pb.UnmaskShares(client=2, key_shares=[owned] * 20_000)))
    @example(pb.ClientMessage(masked_input=pb.MaskedInput(client=1, payload=bytes(17 * MIB))))
    @example(pb.ClientMessage(abort=pb.ClientAbort(client=2**64 - 1, reason="é" * MIB)))
    def submit(msg: pb.ClientMessage) -> None:
        check("Submit", *code_of(lambda: live.stub.Submit(msg, timeout=10)))

    @hsettings(FUZZ, max_examples=60)
    @given(chunks=upload_streams(payload_size))
    def upload(chunks: list[pb.UploadChunk]) -> None:
        check("Upload", *code_of(lambda: live.stub.Upload(iter(chunks), timeout=10)))

    @hsettings(FUZZ, max_examples=40)
    @given(client=client_ids, epoch=u64, after=u64, round_=rounds)
    def poll_and_model(client: int, epoch: int, after: int, round_: int) -> None:
        request = pb.PollRequest(client=client, epoch=epoch, after=after)
        check("Poll", *code_of(lambda: live.stub.Poll(request, timeout=0.6)))
        model = pb.ModelRequest(client=client, round=round_)
        check("Poll", *code_of(lambda: list(live.stub.GetModel(model, timeout=5))))

    submit()
    upload()
    poll_and_model()
    healthy(live)
    # The fuzz got past the codec: roster, round and size checks all answered.
    assert {
        Code.INVALID_ARGUMENT,
        Code.FAILED_PRECONDITION,
        Code.PERMISSION_DENIED,
        Code.RESOURCE_EXHAUSTED,  # the 17 MiB example, refused by the library
    } <= seen["Submit"], seen


# ---------------------------------------------------------------- T32 oversized and truncated


def _chunks(
    data: bytes,
    *,
    pieces: list[tuple[int, int]] | None = None,
    total: int | None = None,
    digest: bytes | None = None,
    client: int = 1,
    round_: int = 0,
) -> list[pb.UploadChunk]:
    """An upload of ``data`` cut into (offset, end) ``pieces``; the digest goes in the last."""
    pieces = pieces or [(0, len(data))]
    out = [
        pb.UploadChunk(
            client=client,
            round=round_,
            upload_id="u",
            offset=start,
            total_length=len(data) if total is None else total,
            data=data[start:end],
        )
        for start, end in pieces
    ]
    out[-1].sha256 = hashlib.sha256(data).digest() if digest is None else digest
    return out


def test_t32_oversized_and_truncated_uploads_are_never_counted(make_live: Factory) -> None:
    """T32: every malformed upload is refused with its code, then the round completes exactly."""
    live = make_live()
    cohort, round_start = start_round(live)
    cohort.send(cohort.answer(round_start))  # AdvertiseKeys
    cohort.step()  # KeyList -> ShareKeys
    held = cohort.answer(cohort.next_messages())  # ShareBundle -> MaskedInput, held back
    coordinator = live.server.coordinator
    machine = coordinator.machine
    assert machine is not None and machine.phase.value == "masked"
    honest = held[1][0]
    assert isinstance(honest, MaskedInput)
    p = honest.payload
    other = bytes(b ^ 0x55 for b in p)  # a different, well-formed payload of the right size
    n = len(p)
    before = (machine.accepted_count(), coordinator.store.count_messages(coordinator.epoch))

    big = bytes(MAX_CHUNK + 1)
    huge = bytes(MAX_MESSAGE + 1)
    cases: dict[str, tuple[list[pb.UploadChunk], grpc.StatusCode]] = {
        "total over the cap": (_chunks(other, total=CAP + 1), Code.INVALID_ARGUMENT),
        "total 2^64-1": (_chunks(other, total=2**64 - 1), Code.INVALID_ARGUMENT),
        "chunk over 4 MiB": (_chunks(big, total=n), Code.INVALID_ARGUMENT),
        "chunk over 16 MiB": (_chunks(huge, total=n), Code.RESOURCE_EXHAUSTED),
        "longer than declared": (_chunks(other + b"x", total=n), Code.INVALID_ARGUMENT),
        "last chunk missing": (_chunks(other, pieces=[(0, n // 2)]), Code.INVALID_ARGUMENT),
        "offset gap": (_chunks(other, pieces=[(0, 10), (12, n)]), Code.INVALID_ARGUMENT),
        "offset overlap": (_chunks(other, pieces=[(0, 10), (8, n)]), Code.INVALID_ARGUMENT),
        "first offset not 0": (_chunks(other, pieces=[(1, n)]), Code.INVALID_ARGUMENT),
        "sha256 mismatch": (
            _chunks(other, digest=hashlib.sha256(p).digest()),
            Code.INVALID_ARGUMENT,
        ),
        "no sha256": (_chunks(other, digest=b""), Code.INVALID_ARGUMENT),
        "empty stream": ([], Code.INVALID_ARGUMENT),
        "stale round": (_chunks(other, round_=1), Code.FAILED_PRECONDITION),
        "unknown client": (_chunks(other, client=9), Code.PERMISSION_DENIED),
    }
    mixed = _chunks(other, pieces=[(0, 10), (10, n)])
    mixed[1].upload_id = "v"
    cases["chunks disagree on the id"] = (mixed, Code.INVALID_ARGUMENT)
    for name, (chunks, expected) in cases.items():
        code, details = code_of(lambda c=chunks: live.stub.Upload(iter(c), timeout=10))
        assert code is expected, (name, code, details)
    # A unary message over the limit: refused by the library before our handler.
    too_big = pb.ClientMessage(masked_input=pb.MaskedInput(client=1, round=0, payload=huge))
    code, details = code_of(lambda: live.stub.Submit(too_big, timeout=10))
    assert code is Code.RESOURCE_EXHAUSTED, details

    assert (machine.accepted_count(), coordinator.store.count_messages(coordinator.epoch)) == before
    assert machine.excluded == {}
    cohort.send(held)  # the honest masked inputs, through the production chunking
    cohort.step()  # UnmaskRequest -> UnmaskShares
    assert all(m == [] for m in cohort.answer(cohort.next_messages()).values())  # RoundComplete
    assert wait_for(lambda: coordinator.history, 5)
    record = coordinator.history[0]
    assert record.completed and record.survivors == list(ROSTER)
    assert record.total_sha256 == expected_sha256(list(ROSTER), 0, DIM, LEVELS)
    healthy(live)


# ---------------------------------------------------------------- T33 malformed protobuf


def _raw_submit(live: Live) -> grpc.UnaryUnaryMultiCallable:
    return live.channel.unary_unary(
        SUBMIT, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )


MALFORMED = {
    "tag without a value": b"\x0a",
    "truncated length varint": b"\x0a\xff",
    "truncated varint": b"\x08\xff\xff\xff",
    "overlong varint": b"\xff" * 11,
    "field number 0": b"\x00",
    "length past the end": b"\x12\x05\x08\x01",
    "unmatched end-group": b"\x7c",
    "unclosed group": b"\x7b",
    "groups nested 101 deep": b"\x7b" * 101 + b"\x7c" * 101,
    "groups nested 5000 deep": b"\x7b" * 5000 + b"\x7c" * 5000,
    "bad UTF-8 in a string": pb.ClientMessage(abort=pb.ClientAbort(client=1, reason="ab"))
    .SerializeToString()
    .replace(b"ab", b"\xff\xfe"),
}
PARSABLE_BUT_EMPTY = {
    "empty": b"",
    "unknown field only": b"\x78\x01",
    "groups nested 50 deep": b"\x7b" * 50 + b"\x7c" * 50,
}


def test_t33_malformed_protobuf_at_the_stub_boundary(make_live: Factory) -> None:
    """T33: unparsable and empty bytes get INVALID_ARGUMENT, never INTERNAL."""
    live = make_live()
    submit = _raw_submit(live)
    for name, raw in MALFORMED.items():
        code, details = code_of(lambda r=raw: submit(r, timeout=5))
        assert (code, details) == (Code.INVALID_ARGUMENT, PARSE_ERROR), name
    for name, raw in PARSABLE_BUT_EMPTY.items():
        code, details = code_of(lambda r=raw: submit(r, timeout=5))
        assert code is Code.INVALID_ARGUMENT, (name, code, details)

    @hsettings(FUZZ, max_examples=100)
    @given(raw=st.binary(max_size=200))
    def garbage(raw: bytes) -> None:
        code, details = code_of(lambda: submit(raw, timeout=5))
        assert code in ALLOWED, (raw, code, details)

    garbage()
    healthy(live)


# ---------------------------------------------------------------- T34 deadlines


def test_t34_short_deadlines_do_not_hold_server_slots(make_live: Factory) -> None:
    """T34: Polls with a 0.3 s deadline against a 5 s server wait end at once and free their slot.

    The servicer waits at most ``time_remaining() - 0.5``, so such a Poll is
    answered OK with no message right away (DEADLINE_EXCEEDED would also be
    acceptable); either way nothing is left running on the server. Only
    clients 1 and 2 poll, so no round starts and nothing is ever pending.
    """
    # Every bound below is the server's 5 s wait, not a guess at this machine's speed:
    # a call that held its slot for the server's wait would take 5 s.
    wait = 5.0
    live = make_live(poll_wait_s=wait, max_workers=4)  # at most 8 concurrent RPCs
    codes: set[grpc.StatusCode] = set()
    for _ in range(20):
        start = time.monotonic()
        code, _details = code_of(lambda: live.stub.Poll(pb.PollRequest(client=1), timeout=0.3))
        assert time.monotonic() - start < wait
        codes.add(code)
    # 20 at once, beyond the concurrency limit: the excess may get RESOURCE_EXHAUSTED
    # from the library, the rest end at once.
    start = time.monotonic()
    calls = [live.stub.Poll.future(pb.PollRequest(client=1), timeout=0.3) for _ in range(20)]
    for call in calls:
        codes.add(code_of(call.result)[0])
    assert time.monotonic() - start < wait
    assert codes <= {Code.OK, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED}, codes
    assert Code.OK in codes
    # Every slot is free again: other calls are answered promptly.
    start = time.monotonic()
    healthy(live)
    code, _ = code_of(lambda: live.stub.Poll(pb.PollRequest(client=2), timeout=0.3))
    assert code in {Code.OK, Code.DEADLINE_EXCEEDED}
    assert time.monotonic() - start < wait
    # A longer deadline: the server waits 1.5 - 0.5 s (not 5 s) and answers before it
    # (OK, not DEADLINE_EXCEEDED, says it answered in time).
    start = time.monotonic()
    code, details = code_of(lambda: live.stub.Poll(pb.PollRequest(client=2), timeout=1.5))
    assert code is Code.OK, details
    assert 0.8 < time.monotonic() - start
    assert live.server.coordinator.machine is None


# ---------------------------------------------------------------- T41 graceful shutdown


def _port_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (SO_REUSEADDR, as gRPC binds).

    Without SO_REUSEADDR the bind can fail on connections the old server closed
    (TIME_WAIT), although nothing listens there any more.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


def test_t41_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    """T41: SIGTERM: health goes down, an in-flight Poll still completes, exit 0, port freed."""
    config = tmp_path / "aggregator.toml"
    config.write_text(
        "[aggregator]\n"
        'listen = "127.0.0.1:0"\ninsecure = true\nprofile = "semi-honest"\n'
        f'state_dir = "state"\ndim = {DIM}\nrounds = 1\npoll_wait_s = 2.0\n'
    )
    cmd = [*SECAGG, "aggregator", "serve", "--config", str(config), "--clients", "3"]
    log = open(tmp_path / "aggregator.log", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=child_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("aggregator listening on port"), line
        port = int(line.split()[-1])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = pb_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
            request = health_pb2.HealthCheckRequest(service=SERVICE)
            assert health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
            assert not _port_free(port)  # the check can tell a listening port
            in_flight = stub.Poll.future(pb.PollRequest(client=1), timeout=10)  # waits 2 s
            time.sleep(0.3)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)

            def down() -> bool:
                try:
                    status = health.Check(request, timeout=1).status
                except grpc.RpcError as exc:
                    return bool(exc.code() is Code.UNAVAILABLE)
                return bool(status == health_pb2.HealthCheckResponse.NOT_SERVING)

            assert wait_for(down, 2.0)
            reply = in_flight.result()  # finished within the grace period
            assert not reply.HasField("message")
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - sent < 8.0
            assert _port_free(port)
            code, _ = code_of(lambda: stub.Poll(pb.PollRequest(client=1), timeout=2))
            assert code is Code.UNAVAILABLE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


# ---------------------------------------------------------------- T42 health during recovery


def test_t42_serving_right_after_start(make_live: Factory) -> None:
    live = make_live()
    healthy(live)


def test_t42_recovery_replays_the_running_round(make_live: Factory) -> None:
    """T42: NOT_SERVING and UNAVAILABLE while the stored round is replayed, then SERVING.

    A first server gets two AdvertiseKeys of round 0 and stops mid-round; a
    second one on the same state dir replays them. Its recovery is held on an
    event so the test can look at the service in between.
    """
    first = make_live()
    cohort, round_start = start_round(first)
    keys = cohort.answer(round_start)
    cohort.send({c: keys[c] for c in (1, 2)})
    retry = codec.client_to_proto(keys[3][0])  # client 3's AdvertiseKeys, sent only later
    old = first.server.coordinator
    assert old.machine is not None and old.machine.accepted_count() == 2
    epoch = old.epoch
    first.stop()

    second = make_live(start=False)
    coordinator = second.server.coordinator
    release = threading.Event()
    replay = coordinator.recover

    def held_recover() -> None:
        assert release.wait(10)
        replay()

    coordinator.recover = held_recover  # type: ignore[method-assign]
    starter = threading.Thread(target=second.server.start)
    starter.start()
    try:
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert wait_for(lambda: _status_or_none(second) == not_serving, 5)
        watch = second.health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
        # Calls during the replay are told to come back (UNAVAILABLE), not refused for good.
        for call in (
            lambda: second.stub.Submit(retry, timeout=5),
            lambda: second.stub.Poll(pb.PollRequest(client=1, epoch=epoch, after=1), timeout=2),
            lambda: list(second.stub.GetModel(pb.ModelRequest(client=1, round=0), timeout=5)),
        ):
            assert code_of(call)[0] is Code.UNAVAILABLE
    finally:
        release.set()
        starter.join(10)
    statuses = []
    for reply in watch:
        statuses.append(reply.status)
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            watch.cancel()
            break
    assert statuses[0] == not_serving and statuses[-1] == health_pb2.HealthCheckResponse.SERVING
    healthy(second)
    machine = coordinator.machine
    assert machine is not None and coordinator.epoch == epoch
    assert machine.phase.value == "advertise" and machine.accepted_count() == 2
    # Client 3's AdvertiseKeys now completes the phase of the replayed round.
    assert code_of(lambda: second.stub.Submit(retry, timeout=5))[0] is Code.OK
    assert wait_for(lambda: machine.phase.value == "share", 5)


def _status_or_none(live: Live) -> int | None:
    try:
        return live.health_status()
    except grpc.RpcError:
        return None


# ---------------------------------------------------------------- roster and staleness


def test_unknown_client_and_stale_round_codes(make_live: Factory) -> None:
    """Not on the roster: PERMISSION_DENIED; another round: FAILED_PRECONDITION; nothing counted."""
    live = make_live()
    keys = pb.AdvertiseKeys(client=1, round=0, c_public=bytes(32), s_public=bytes(32))
    code, _ = code_of(lambda: live.stub.Submit(pb.ClientMessage(advertise_keys=keys), timeout=5))
    assert code is Code.FAILED_PRECONDITION  # no round is running yet

    start_round(live)
    machine = live.server.coordinator.machine
    assert machine is not None
    cases: dict[str, tuple[Callable[[], object], grpc.StatusCode]] = {}
    for client in (0, 4, 9, 2**64 - 1):
        stranger = pb.AdvertiseKeys(client=client, round=0, c_public=bytes(32), s_public=bytes(32))
        cases[f"Submit from {client}"] = (
            lambda m=stranger: live.stub.Submit(pb.ClientMessage(advertise_keys=m), timeout=5),
            Code.PERMISSION_DENIED,
        )
        cases[f"Poll from {client}"] = (
            lambda c=client: live.stub.Poll(pb.PollRequest(client=c), timeout=2),
            Code.PERMISSION_DENIED,
        )
    stale = pb.AdvertiseKeys(client=1, round=1, c_public=bytes(32), s_public=bytes(32))
    cases["Submit for round 1"] = (
        lambda: live.stub.Submit(pb.ClientMessage(advertise_keys=stale), timeout=5),
        Code.FAILED_PRECONDITION,
    )
    cases["GetModel of round 1"] = (
        lambda: list(live.stub.GetModel(pb.ModelRequest(client=1, round=1), timeout=5)),
        Code.FAILED_PRECONDITION,
    )
    for name, (call, expected) in cases.items():
        code, details = code_of(call)
        assert code is expected, (name, code, details)
    assert machine.accepted_count() == 0 and machine.excluded == {}
    healthy(live)


# ---------------------------------------------------------------- a full disk mid-round


def test_a_message_the_log_cannot_record_ends_the_attempt(
    make_live: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: never acknowledge (or complete a round on) a message the event log lacks."""
    import sqlite3

    live = make_live()
    cohort, starts = start_round(live)
    coordinator = live.server.coordinator
    epoch = coordinator.epoch
    store = live.server.store
    real_log = store.log

    def full(epoch_: int, kind: str, **kwargs: Any) -> None:
        if kind == "message":
            raise sqlite3.OperationalError("database or disk is full")
        real_log(epoch_, kind, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "log", full)
    replies = cohort.answer({1: starts[1]})
    with pytest.raises(grpc.RpcError) as refused:
        cohort.send(replies)
    assert refused.value.code() == Code.RESOURCE_EXHAUSTED  # retryable: daemons back off

    def aborted() -> bool:
        return any(
            a["epoch"] == epoch and "could not record client 1" in str(a["reason"])
            for a in coordinator.status()["recent_aborts"]
        )

    assert wait_for(aborted, timeout=10)
    monkeypatch.setattr(store, "log", real_log)  # space returns
    assert wait_for(lambda: coordinator.epoch > epoch, timeout=15)  # a fresh attempt starts
    assert [e for e in store.events(epoch) if e.kind == "message" and e.client == 1] == []
    assert live.server.servicer.disk.count == 1
    healthy(live)
