"""T28: request signatures and freshness on a live aggregator.

An in-process :class:`AggregatorServer` whose roster holds signing keys (a
PKI made here; insecure transport, so the test can claim identities), in the
semi-honest profile so that the protocol messages themselves carry no
signatures: whatever is rejected here is rejected by the request signature.

- 1,000 random byte flips of signed requests (every message kind, Submit) and
  200 of a signed upload's first chunk, handed to the servicer in process:
  100 % rejected, none accepted, nothing stored; the unmutated request is
  then accepted once and its replay refused.
- Over live gRPC: unsigned, wrongly keyed and flipped requests are
  UNAUTHENTICATED; a replayed nonce and a request from an earlier attempt of
  the round are FAILED_PRECONDITION and change nothing.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError

from aggregator.pki import init_pki
from aggregator.server import AggregatorServer
from aggregator.settings import AggregatorSettings
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    ConsistencySignature,
    EncryptedShare,
    MaskedInput,
    RoundStart,
    ShareKeys,
    UnmaskShares,
)
from protocol.request_auth import NONCE_BYTES, masked_digest, sign_message, sign_request
from secagg.primitives.signing import SigningKey
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.integration.harness import wait_for
from tests.integration.test_robustness import Live, _connect, code_of, start_round

pytestmark = pytest.mark.integration

DIM = 16
ROSTER = (1, 2, 3)
Code = grpc.StatusCode
REJECTED = {Code.UNAUTHENTICATED, Code.PERMISSION_DENIED, Code.INVALID_ARGUMENT}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("t28") / "pki"
    init_pki(root, clients=len(ROSTER), server_names=["localhost", "127.0.0.1"], days=1)
    return root


def signing_key(pki: Path, client: int) -> SigningKey:
    return SigningKey(bytes.fromhex((pki / "clients" / str(client) / "signing.key").read_text()))


@pytest.fixture
def make_live(tmp_path: Path, pki: Path) -> Iterator[Callable[..., Live]]:
    made: list[Live] = []

    def make(**overrides: Any) -> Live:
        options: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "insecure": True,  # claimed identities; the roster still holds signing keys
            "pki_dir": str(pki),
            "profile": "semi-honest",
            "state_dir": str(tmp_path / "state"),
            "dim": DIM,
            "rounds": 2,
            "poll_wait_s": 0.5,
            "phase_timeout_s": 30.0,
            "max_workers": 8,
            "rate_limit_per_s": 0.0,  # thousands of requests from one client on purpose
            **overrides,
        }
        live = _connect(AggregatorServer(AggregatorSettings(**options)))
        made.append(live)
        live.server.start()
        return live

    yield make
    for live in made:
        live.stop()


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code


class Context:
    """The two things the servicer asks of a gRPC context, for calls made in process."""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Refused(code, details)

    def time_remaining(self) -> float:
        return 5.0


def in_process(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except Refused as exc:
        return exc.code
    return Code.OK


def fresh_nonce(rng: random.Random) -> bytes:
    return rng.randbytes(NONCE_BYTES)


def kinds(client: int, round_: int) -> list[ClientMessage]:
    """One message of every kind (contents need not be valid: the signature is checked first)."""
    return [
        ShareKeys(client, round_, (EncryptedShare(client, 2, b"x" * 90),), b"m" * 32, b""),
        MaskedInput(client, round_, b"\x05" * 40),
        ConsistencySignature(client, round_, b""),
        UnmaskShares(client, round_, ((2, b"a" * 64),), ((3, b"b" * 64),)),
        ClientAbort(client, round_, "mutated aborts must not exclude anyone"),
    ]


def flip(raw: bytes, rng: random.Random) -> bytes:
    """Change one byte of ``raw`` (xor with a non-zero mask)."""
    at = rng.randrange(len(raw))
    return raw[:at] + bytes([raw[at] ^ rng.randrange(1, 256)]) + raw[at + 1 :]


def advertise_of(live: Live, starts: dict[int, Any], client: int) -> AdvertiseKeys:
    from tests.integration.test_robustness import HonestCohort

    cohort = HonestCohort(live)
    msg = cohort.answer({client: starts[client]})[client][0]
    assert isinstance(msg, AdvertiseKeys)
    return msg


def test_t28_1000_mutated_signed_requests_are_all_rejected(
    make_live: Callable[..., Live], pki: Path
) -> None:
    live = make_live()
    _cohort, starts = start_round(live)
    start = starts[1]
    assert isinstance(start, RoundStart)
    session = start.config.nonce
    key = signing_key(pki, 1)
    rng = random.Random(28)
    servicer, context = live.server.servicer, Context()
    coordinator = live.server.coordinator
    machine = coordinator.machine
    assert machine is not None

    advertise = advertise_of(live, starts, 1)
    originals = [
        codec.signed_client_to_proto(
            m, sign_message(key, m, session=session, nonce=fresh_nonce(rng))
        ).SerializeToString()
        for m in [advertise, *kinds(1, start.config.round)]
    ]
    codes: Counter[grpc.StatusCode | str] = Counter()
    for i in range(1000):
        mutated = flip(originals[i % len(originals)], rng)
        try:
            request = pb.ClientMessage.FromString(mutated)
        except DecodeError:
            codes["unparsable (INVALID_ARGUMENT before any handler runs)"] += 1
            continue
        codes[in_process(lambda r=request: servicer.Submit(r, context))] += 1  # type: ignore[misc]

    payload = b"\x07" * 40
    digest = hashlib.sha256(payload).digest()
    auth = sign_request(
        key,
        session=session,
        nonce=fresh_nonce(rng),
        round_=0,
        phase="masked",
        sender=1,
        body=masked_digest(1, 0, digest),
    )
    chunk = pb.UploadChunk(
        client=1,
        round=0,
        upload_id=auth.nonce.hex(),
        offset=0,
        total_length=len(payload),
        data=payload,
        sha256=digest,
        auth=codec.auth_to_proto(auth),
    ).SerializeToString()
    for _ in range(200):
        try:
            upload = pb.UploadChunk.FromString(flip(chunk, rng))
        except DecodeError:
            codes["unparsable (INVALID_ARGUMENT before any handler runs)"] += 1
            continue
        codes[in_process(lambda u=upload: servicer.Upload(iter([u]), context))] += 1  # type: ignore[misc]

    assert sum(codes.values()) == 1200
    assert Code.OK not in codes, codes
    assert set(codes) <= REJECTED | {"unparsable (INVALID_ARGUMENT before any handler runs)"}, codes
    assert codes[Code.UNAUTHENTICATED] >= 900, codes  # the signature is what catches them
    assert machine.accepted_count() == 0 and machine.excluded == {}
    assert coordinator.store.count_messages(coordinator.epoch) == 0

    # Control: the unmutated request is accepted once; its replay is refused.
    request = pb.ClientMessage.FromString(originals[0])
    assert in_process(lambda: servicer.Submit(request, context)) is Code.OK
    assert in_process(lambda: servicer.Submit(request, context)) is Code.FAILED_PRECONDITION
    assert machine.accepted_count() == 1 and machine.excluded == {}
    # The signed upload, unmutated, passes every signature check (and then meets the
    # phase check: the round is still collecting keys).
    upload = pb.UploadChunk.FromString(chunk)
    assert in_process(lambda: servicer.Upload(iter([upload]), context)) is (
        Code.FAILED_PRECONDITION
    )


def test_t28_live_grpc_signatures_and_freshness(make_live: Callable[..., Live], pki: Path) -> None:
    live = make_live(phase_timeout_s=1.0, retry_delay_s=0.1, start_timeout_s=60.0)
    _cohort, starts = start_round(live)
    start = starts[1]
    assert isinstance(start, RoundStart)
    first_session = start.config.nonce
    key, other = signing_key(pki, 1), signing_key(pki, 2)
    rng = random.Random(29)
    coordinator = live.server.coordinator
    first = coordinator.machine
    assert first is not None
    advertise = advertise_of(live, starts, 1)

    def submit(msg: ClientMessage, signer: SigningKey | None, session: bytes) -> pb.ClientMessage:
        auth = None
        if signer is not None:
            auth = sign_message(signer, msg, session=session, nonce=fresh_nonce(rng))
        return codec.signed_client_to_proto(msg, auth)

    unsigned = submit(advertise, None, first_session)
    wrong_key = submit(advertise, other, first_session)
    flipped = submit(advertise, key, first_session)
    flipped.auth.signature = flip(flipped.auth.signature, rng)
    for name, request in (("unsigned", unsigned), ("wrong key", wrong_key), ("flip", flipped)):
        code, details = code_of(lambda r=request: live.stub.Submit(r, timeout=5))  # type: ignore[misc]
        assert code is Code.UNAUTHENTICATED, (name, details)
    good = submit(advertise, key, first_session)
    assert code_of(lambda: live.stub.Submit(good, timeout=5))[0] is Code.OK
    code, details = code_of(lambda: live.stub.Submit(good, timeout=5))
    assert code is Code.FAILED_PRECONDITION and "nonce" in details
    assert first.accepted_count() == 1

    # Only client 1 answered: the attempt aborts at its 1 s deadline and round 0 starts
    # again (a new attempt, a new session). Its requests from the first attempt are stale.
    def second_attempt() -> bool:
        for c in ROSTER:  # stay present
            live.stub.Poll(pb.PollRequest(client=c, epoch=99), timeout=2)
        machine = coordinator.machine
        return machine is not None and machine is not first

    assert wait_for(second_attempt, 15)
    second = coordinator.machine
    assert second is not None and second.config.nonce != first_session
    assert second.config.round == 0
    replay = submit(advertise, key, first_session)  # fresh nonce, validly signed, old session
    code, details = code_of(lambda: live.stub.Submit(replay, timeout=5))
    assert code is Code.FAILED_PRECONDITION and "attempt" in details, details
    assert second.accepted_count() == 0 and second.excluded == {}
    time.sleep(0.1)
    assert coordinator.store.count_messages(coordinator.epoch) == 0
