"""The hybrid HE mode in memory: exact sums with dropouts, collusion, bad uploads."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from protocol.client import ClientPhase
from protocol.errors import InvalidMessage, ProtocolError
from protocol.he_flow import HEKeyDelivery
from protocol.he_masked import (
    PHASES,
    HEMaskedClientMachine,
    HEMaskedClientMessage,
    HEMaskedConfig,
    HEMaskedServerMachine,
    HEMaskedStart,
    parse_upload,
    run_he_masked_round,
    upload_fields,
    upload_payload,
)
from protocol.messages import ClientAbort, MaskedInput, RoundStart
from protocol.server import ServerPhase
from secagg import he
from secagg.errors import OverflowRisk
from secagg.primitives.signing import SigningKey, sign, signing_key
from secagg.quantization import dequantize_sum
from secagg.rng import DeterministicRandomSource, uniform_below

N, DIM = 5, 300  # threshold 4: the safe minimum for 5 clients (one may drop)
WEIGHTS = {1: 3, 2: 5, 3: 7, 4: 2, 5: 10}
T = he.BFV_8192.plain_modulus


def make_round(
    n: int = N, dim: int = DIM
) -> tuple[HEMaskedConfig, dict[int, SigningKey], dict[int, np.ndarray]]:
    rng = DeterministicRandomSource("he-masked")
    config = HEMaskedConfig(
        round=0,
        clients=tuple(range(1, n + 1)),
        threshold=n - 1,
        dim=dim,
        key_holder=1,
        clip=1.0,
        levels=1 << 16,
        max_weight=10,
        nonce=bytes(32),
        model_hash=hashlib.sha256(b"model").digest(),
    )
    keys = {c: signing_key(rng) for c in config.clients}
    levels = {c: uniform_below(rng, config.levels, dim) for c in config.clients}
    return config, keys, levels


def exact_sum(levels: dict[int, np.ndarray], members: tuple[int, ...]) -> np.ndarray:
    total = np.zeros(DIM, dtype=object)
    for c in members:
        total = total + levels[c].astype(object) * WEIGHTS[c]
    return total


@pytest.mark.parametrize("phase", [None, *PHASES])
def test_exact_weighted_sum_with_a_dropout_at_each_phase(phase: str | None) -> None:
    config, keys, levels = make_round()
    drops = {phase: [3]} if phase else None
    report = run_he_masked_round(
        config,
        levels=levels,
        weights=WEIGHTS,
        roster_keys=keys,
        rng=DeterministicRandomSource(1),
        drops=drops,
    )
    assert report.completed, report.abort_reason
    # Client 3's input counts iff it sent its masked ciphertexts (drops from consistency on).
    in_sum = phase in ("consistency", "unmask")
    assert report.survivors == ((1, 2, 3, 4, 5) if phase is None or in_sum else (1, 2, 4, 5))
    receivers = {1, 2, 4, 5} if phase else {1, 2, 3, 4, 5}
    assert set(report.totals) == receivers and report.exact
    expected = exact_sum(levels, report.survivors)
    weight_sum = sum(WEIGHTS[c] for c in report.survivors)
    mean = dequantize_sum(expected.astype(np.uint64), config.secagg().quantizer,
                          weight_sum=weight_sum) / weight_sum  # fmt: skip
    for c in receivers:
        assert [int(v) for v in report.totals[c]] == list(expected)
        assert np.array_equal(report.results[c], mean)
    assert report.weight_sum == weight_sum


def test_key_holder_missing_aborts_but_may_drop_after_delivering() -> None:
    config, keys, levels = make_round()
    run = dict(levels=levels, weights=WEIGHTS, roster_keys=keys, rng=DeterministicRandomSource(2))
    early = run_he_masked_round(config, drops={"advertise": [1]}, **run)  # type: ignore[arg-type]
    assert not early.completed and "key holder" in (early.abort_reason or "")
    assert early.totals == {}
    late = run_he_masked_round(config, drops={"masked": [1]}, **run)  # type: ignore[arg-type]
    assert late.completed and late.exact and late.survivors == (2, 3, 4, 5)


def test_config_refuses_a_sum_that_could_wrap_mod_t() -> None:
    config, _, _ = make_round()
    with pytest.raises(OverflowRisk):
        dataclasses.replace(config, levels=1 << 20, max_weight=1000)


# ---------------------------------------------------------------- a driver with hooks


@dataclass
class Run:
    """The machines of one driven round, and what the server refused."""

    server: HEMaskedServerMachine
    clients: dict[int, HEMaskedClientMachine]
    rejected: list[tuple[int, str]] = field(default_factory=list)


Hook = Callable[[Run, int, HEMaskedClientMessage], HEMaskedClientMessage]


def drive(
    config: HEMaskedConfig,
    keys: dict[int, SigningKey],
    levels: dict[int, np.ndarray],
    hook: Hook | None = None,
) -> Run:
    """Run a round; ``hook`` sees (and may replace) every client message before the server."""
    roster = {c: k.public for c, k in keys.items()}
    clients = {
        c: HEMaskedClientMachine(
            c, rng=DeterministicRandomSource(c), signing_key=keys[c], roster=roster
        )
        for c in config.clients
    }
    for c, machine in clients.items():
        machine.set_levels(levels[c], weight=WEIGHTS[c], model_hash=config.model_hash)
    run = Run(HEMaskedServerMachine(config, roster=roster), clients)
    outbox = run.server.start()
    while outbox:
        for cid, msg in outbox:
            for reply in clients[cid].handle(msg):
                try:
                    run.server.receive(cid, hook(run, cid, reply) if hook else reply)
                except ProtocolError as exc:
                    run.rejected.append((cid, type(exc).__name__))
        if run.server.phase in (ServerPhase.COMPLETED, ServerPhase.ABORTED):
            break
        outbox = run.server.advance()
    return run


def test_a_colluding_key_holder_sees_only_a_masked_upload() -> None:
    """Server + client 2 (which holds the session key) decrypt client 3's upload: noise."""
    config, keys, levels = make_round()
    uploads: dict[int, bytes] = {}
    stolen: list[he.HEContext] = []

    def collude(run: Run, cid: int, msg: HEMaskedClientMessage) -> HEMaskedClientMessage:
        if isinstance(msg, MaskedInput):
            uploads[cid] = msg.payload
            context = run.clients[2]._payload.context  # client 2 hands its key over
            if context is not None and not stolen:
                stolen.append(context)
        return msg

    run = drive(config, keys, levels, collude)
    assert run.server.phase is ServerPhase.COMPLETED and stolen
    ctx = stolen[0]
    blobs, _ = parse_upload(uploads[3], he.chunk_count(ctx.params, config.vector_length))
    seen = np.concatenate([ctx.engine.decrypt_residues(ctx.engine.load(b)) for b in blobs])
    seen = seen[: config.vector_length].astype(np.float64)
    truth = np.append(levels[3].astype(np.float64) * WEIGHTS[3], WEIGHTS[3])
    assert int(np.sum(seen == truth)) <= 1
    # The true values all lie below (Q − 1)·w_max ≈ 6.6e5; residues uniform mod t ≈ 1.07e9
    # land there with probability 6e-4. The mean of uniform residues is t/2 ± 5σ.
    assert float(np.mean(seen < 65535 * 10)) < 0.02
    sigma = T * (1 / 12 / seen.size) ** 0.5
    assert abs(float(np.mean(seen)) - T / 2) < 5 * sigma
    # Yet every client decrypted the exact weighted sum.
    expected = list(exact_sum(levels, (1, 2, 3, 4, 5)))
    totals = [m.total for m in run.clients.values()]
    assert all(t is not None and [int(v) for v in t] == expected for t in totals)


def resign(run: Run, keys: dict[int, SigningKey], cid: int, blobs: list[bytes]) -> bytes:
    """A malicious client signs whatever it uploads (the signature proves origin only)."""
    session = run.server._core.session_id
    return upload_payload(blobs, sign(keys[cid], *upload_fields(session, cid, blobs)))


BAD_UPLOADS = ("replayed", "foreign-parameters", "truncated", "no-framing", "too-few")


@pytest.mark.parametrize("kind", BAD_UPLOADS)
def test_malformed_uploads_are_rejected_and_the_round_goes_on(kind: str) -> None:
    config, keys, levels = make_round()
    count = he.chunk_count(config.params, config.vector_length)
    seen: dict[int, bytes] = {}

    def tamper(run: Run, cid: int, msg: HEMaskedClientMessage) -> HEMaskedClientMessage:
        if not isinstance(msg, MaskedInput):
            return msg
        seen[cid] = msg.payload
        if cid != 3:
            return msg
        blobs, _ = parse_upload(msg.payload, count)
        if kind == "replayed":  # client 1's valid upload under client 3's name
            payload = seen[1]
        elif kind == "foreign-parameters":  # CKKS ciphertexts: another parms_id
            ckks = he.make_context(he.CKKS_8192)
            payload = resign(run, keys, cid, he.encrypt(ckks, np.zeros(8)) * count)
        elif kind == "truncated":
            payload = resign(run, keys, cid, [b[: len(b) // 2] for b in blobs])
        elif kind == "no-framing":
            payload = bytes(7)
        else:
            payload = resign(run, keys, cid, blobs[:-1] or [b""])
        return dataclasses.replace(msg, payload=payload)

    run = drive(config, keys, levels, tamper)
    expected = "AuthenticationFailed" if kind == "replayed" else "InvalidMessage"
    assert run.rejected == [(3, expected)]
    assert run.server.phase is ServerPhase.COMPLETED and run.server.survivors == (1, 2, 4, 5)
    want = list(exact_sum(levels, (1, 2, 4, 5)))
    for c in (1, 2, 4, 5):
        total = run.clients[c].total
        assert total is not None and [int(v) for v in total] == want
    assert run.clients[3].total is None


def test_a_foreign_key_upload_passes_the_server_but_no_client_accepts_the_sum() -> None:
    """Same parameters, another key, validly signed: only decryption can tell (T53)."""
    config, keys, levels = make_round()
    count = he.chunk_count(config.params, config.vector_length)
    other = he.make_context(config.params)

    def foreign(run: Run, cid: int, msg: HEMaskedClientMessage) -> HEMaskedClientMessage:
        if isinstance(msg, MaskedInput) and cid == 3:
            blobs = he.encrypt_residues(other, np.zeros(config.vector_length, dtype=np.uint64))
            assert len(blobs) == count
            return dataclasses.replace(msg, payload=resign(run, keys, cid, blobs))
        return msg

    run = drive(config, keys, levels, foreign)
    assert run.server.phase is ServerPhase.COMPLETED and run.server.survivors == (1, 2, 3, 4, 5)
    # The only refusals are the clients' aborts, sent after the round had completed.
    assert sorted(run.rejected) == [(c, "WrongPhase") for c in range(1, 6)]
    for machine in run.clients.values():
        assert machine.total is None and machine.phase is ClientPhase.ABORTED
        assert "range" in (machine.abort_reason or "") or "weight" in (machine.abort_reason or "")


def test_the_server_holds_no_secret_and_clients_refuse_a_plain_start() -> None:
    config, keys, levels = make_round()
    deliveries: list[HEKeyDelivery] = []

    def keep(run: Run, cid: int, msg: HEMaskedClientMessage) -> HEMaskedClientMessage:
        if isinstance(msg, HEKeyDelivery):
            deliveries.append(msg)
        return msg

    drive(config, keys, levels, keep)
    public = he.load_public(deliveries[0].public_context, config.params)
    assert not public.has_secret_key
    roster = {c: k.public for c, k in keys.items()}
    client = HEMaskedClientMachine(
        2, rng=DeterministicRandomSource(2), signing_key=keys[2], roster=roster
    )
    client.set_levels(levels[2], weight=1, model_hash=config.model_hash)
    replies = client.handle(RoundStart(config.secagg()))  # a downgrade to plain SecAgg
    assert len(replies) == 1 and isinstance(replies[0], ClientAbort)
    assert client.phase is ClientPhase.ABORTED
    assert client.handle(HEMaskedStart(config)) == []  # and it stays out


def test_upload_framing_round_trips_and_refuses_garbage() -> None:
    blobs = [b"a" * 5, b"", b"c" * 300]
    payload = upload_payload(blobs, b"s" * 64)
    assert parse_upload(payload, 3) == (tuple(blobs), b"s" * 64)
    for bad, count in ((payload, 2), (payload, 4), (payload[:-1], 3), (payload + b"x", 3)):
        with pytest.raises(InvalidMessage):
            parse_upload(bad, count)
