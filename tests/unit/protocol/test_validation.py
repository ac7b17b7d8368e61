"""Malicious or buggy clients against the server: T18–T21, T23, and the status table.

Every rejection is a :class:`ProtocolError` subclass with one documented gRPC
status (security.md §4.2). A rejected message never changes accepted state
(the running sum, who is awaited, the phase); a client whose message was
malformed or conflicting is excluded, and the round goes on without it while
at least t clients remain, with a bit-exact result over the rest.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import protocol.errors as errors_module
from protocol.client import ClientPhase
from protocol.config import RoundConfig
from protocol.errors import (
    AuthenticationFailed,
    ConflictingMessage,
    InvalidMessage,
    ProtocolError,
    RoundAborted,
    UnexpectedCall,
    UnknownClient,
    WrongPhase,
)
from protocol.messages import (
    AdvertiseKeys,
    ClientMessage,
    ConsistencySignature,
    EncryptedShare,
    GraphReveal,
    MaskedInput,
    ServerAbort,
    ShareKeys,
    UnmaskShares,
)
from protocol.server import ServerPhase
from secagg.errors import OverflowRisk
from secagg.packing import pack, packed_size, unpack
from secagg.primitives import shamir
from secagg.primitives.shamir import PRIME
from tests.unit.protocol.helpers import COLLECTING, Harness, small_config

# ---------------------------------------------------------------------- status table

#: security.md §4.2: the one table shared by the server and the tests.
STATUS: dict[type[ProtocolError], str] = {
    ProtocolError: "INVALID_ARGUMENT",
    InvalidMessage: "INVALID_ARGUMENT",
    UnexpectedCall: "FAILED_PRECONDITION",
    WrongPhase: "FAILED_PRECONDITION",
    UnknownClient: "PERMISSION_DENIED",
    AuthenticationFailed: "UNAUTHENTICATED",
    ConflictingMessage: "ALREADY_EXISTS",
    RoundAborted: "ABORTED",
}
DOCUMENTED_CODES = {
    "INVALID_ARGUMENT",
    "FAILED_PRECONDITION",
    "ALREADY_EXISTS",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "ABORTED",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "INTERNAL",
}


@pytest.mark.parametrize("cls", list(STATUS), ids=lambda c: c.__name__)
def test_status_of_each_protocol_error(cls: type[ProtocolError]) -> None:
    assert cls.status == STATUS[cls]
    assert cls("detail").status == STATUS[cls]
    assert cls.status in DOCUMENTED_CODES


def test_status_table_covers_every_protocol_error() -> None:
    defined = {
        obj
        for _, obj in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(obj, ProtocolError)
    }
    assert defined == set(STATUS)
    assert issubclass(InvalidMessage, ValueError)


# ---------------------------------------------------------------------- shared helpers


def _snapshot(h: Harness) -> tuple[object, ...]:
    """Everything a rejected message must leave alone."""
    s = h.server
    return (
        s.phase,
        frozenset(s.waiting_for()),
        tuple(sorted(s.excluded.items())),
        s.payload.sum.tobytes(),
        s.survivors,
    )


def _answers(h: Harness, phase: ServerPhase) -> dict[int, list[ClientMessage]]:
    """Step to ``phase`` and return the clients' answers to it, not yet delivered."""
    h.run_until(phase)
    return h.deliver_down()


def _finish(h: Harness) -> None:
    while h.server.phase in COLLECTING:
        h.step()
    h.finish()


# ---------------------------------------------------------------------- T18


N18 = 5  # t = 4: one malformed input leaves exactly t


def _config18() -> RoundConfig:
    config = small_config(N18, dim=8)
    # 9 words of k bits leave padding bits in the last byte: the padding case is real.
    assert config.vector_length * config.modulus_bits % 8 != 0
    assert config.threshold == N18 - 1
    return config


MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "short": lambda p: p[:-1],
    "long": lambda p: p + b"\0",
    "empty": lambda p: b"",
    "one-byte": lambda p: b"\x01",
    "padding-bits": lambda p: p[:-1] + bytes([p[-1] | 0x80]),
    "double-length": lambda p: p + p,
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_masked_input_excludes_only_its_sender(case: str) -> None:
    h = Harness(_config18(), seed="t18")
    bad = 2
    replies = _answers(h, ServerPhase.MASKED)
    (good,) = replies.pop(bad)
    assert isinstance(good, MaskedInput)
    payload = MALFORMED[case](good.payload)
    expected_size = packed_size(h.config.vector_length, h.config.modulus_bits)
    assert (len(payload) == expected_size) == (case == "padding-bits")
    h.deliver_up({c: r for c, r in replies.items() if c < bad})
    before = _snapshot(h)

    error = h.send(bad, dataclasses.replace(good, payload=payload))

    assert isinstance(error, InvalidMessage)
    assert error.status == "INVALID_ARGUMENT"
    assert bad in h.server.excluded
    assert h.server.payload.sum.tobytes() == before[3]  # the rejected payload was not added
    # Its valid input, sent afterwards, is refused too: it is out of the round.
    assert isinstance(h.send(bad, good), WrongPhase)
    h.deliver_up({c: r for c, r in replies.items() if c > bad})
    _finish(h)
    others = [c for c in h.config.clients if c != bad]
    h.assert_exact(others)
    assert not any(isinstance(m, ServerAbort) for _, m in h.down)


def test_two_malformed_inputs_abort_before_any_unmasking_share() -> None:
    h = Harness(_config18(), seed="t18")
    replies = _answers(h, ServerPhase.MASKED)

    def truncate(cid: int, msg: ClientMessage) -> ClientMessage:
        if cid in (2, 4) and isinstance(msg, MaskedInput):
            return dataclasses.replace(msg, payload=msg.payload[:-1])
        return msg

    rejected = h.deliver_up(replies, tamper=truncate)
    assert set(rejected) == {2, 4}
    assert all(isinstance(e, InvalidMessage) for e in rejected.values())
    h.advance()
    assert h.server.phase is ServerPhase.ABORTED
    h.finish()
    assert h.releases == {}
    for c in (1, 3, 5):
        assert h.clients[c].phase is ClientPhase.ABORTED


def test_malformed_unmasking_replies_are_rejected() -> None:
    """Wrong owner sets or an out-of-range share: InvalidMessage, the sender is excluded."""
    h = Harness(small_config(5, dim=8), seed="t18u")
    replies = _answers(h, ServerPhase.UNMASK)
    first, second = replies[1][0], replies[2][0]
    assert isinstance(first, UnmaskShares) and isinstance(second, UnmaskShares)
    # 1 lists an alive owner among the dropped ones (asking to unmask it twice over).
    moved = dataclasses.replace(
        first, self_mask_shares=first.self_mask_shares[1:], key_shares=first.self_mask_shares[:1]
    )
    # 2 sends a share with a limb equal to the field prime.
    owner, share = second.self_mask_shares[0]
    out_of_range = dataclasses.replace(
        second,
        self_mask_shares=(
            (owner, PRIME.to_bytes(4, "little") + share[4:]),
            *second.self_mask_shares[1:],
        ),
    )
    for cid, bad, detail in ((1, moved, "self-mask shares"), (2, out_of_range, "malformed share")):
        before = _snapshot(h)
        error = h.send(cid, bad)
        assert isinstance(error, InvalidMessage), error
        assert error.status == "INVALID_ARGUMENT"
        assert detail in str(error)
        assert cid in h.server.excluded
        assert _snapshot(h)[3:] == before[3:]
    h.deliver_up({c: r for c, r in replies.items() if c > 2})
    h.advance()
    # Only 3 valid replies, t = 4: abort rather than guess.
    assert h.server.phase is ServerPhase.ABORTED
    assert h.server.abort_reason == "only 3 clients answered in phase unmask, threshold is 4"


# ---------------------------------------------------------------------- T19


def _conflicting(msg: ClientMessage) -> ClientMessage:
    """A different message of the same type from the same client."""
    match msg:
        case AdvertiseKeys():
            return dataclasses.replace(msg, c_public=bytes(32))
        case GraphReveal():
            return dataclasses.replace(msg, nonce=bytes(32))
        case ShareKeys():
            return dataclasses.replace(msg, self_mask_commitment=bytes(32))
        case MaskedInput():
            return dataclasses.replace(msg, payload=bytes([msg.payload[0] ^ 1]) + msg.payload[1:])
        case ConsistencySignature():
            return dataclasses.replace(msg, signature=bytes(64))
        case UnmaskShares():
            return dataclasses.replace(msg, self_mask_shares=msg.self_mask_shares[::-1])
    raise AssertionError(msg)


DUP = 2


def _config(phase: ServerPhase, **kwargs: Any) -> RoundConfig:
    """The complete graph, or SecAgg+ (k = 2) where the graph phase is under test."""
    degree = 2 if phase is ServerPhase.GRAPH else None
    return small_config(5, degree=degree, **kwargs)


@pytest.mark.parametrize("phase", COLLECTING, ids=lambda p: p.value)
def test_identical_retry_is_accepted_once(phase: ServerPhase) -> None:
    h = Harness(_config(phase, dim=10), seed="t19")
    replies = _answers(h, phase)
    h.deliver_up(replies)
    before = _snapshot(h)
    for msg in replies[DUP]:
        assert h.send(DUP, msg) is None
        assert h.send(DUP, msg) is None
    assert _snapshot(h) == before
    _finish(h)
    h.assert_exact(h.config.clients)  # the masked input was counted once


@pytest.mark.parametrize("phase", COLLECTING, ids=lambda p: p.value)
def test_conflicting_second_message_excludes_its_sender(phase: ServerPhase) -> None:
    h = Harness(_config(phase, dim=10), seed="t19")
    replies = _answers(h, phase)
    h.deliver_up(replies)
    (first,) = replies[DUP]
    second = _conflicting(first)
    assert second != first
    sum_before = h.server.payload.sum.tobytes()

    error = h.send(DUP, second)

    assert isinstance(error, ConflictingMessage)
    assert error.status == "ALREADY_EXISTS"
    assert h.server.excluded[DUP] == "sent a conflicting second message"
    assert h.server.payload.sum.tobytes() == sum_before  # the second payload is never added
    assert isinstance(h.send(DUP, first), WrongPhase)  # and it is out of the round
    _finish(h)
    everyone = list(h.config.clients)
    if phase is ServerPhase.GRAPH:
        # A member out of the graph phase leaves a nonce missing: the graph cannot be drawn.
        assert h.server.phase is ServerPhase.ABORTED
        assert "graph nonces missing" in (h.server.abort_reason or "")
    elif phase in (ServerPhase.ADVERTISE, ServerPhase.SHARE):
        h.assert_exact([c for c in everyone if c != DUP])
    else:
        # Its first masked input is already in the sum and cannot be taken out:
        # it stays in U3 and its masks are removed from the others' shares.
        h.assert_exact(everyone)


# ---------------------------------------------------------------------- T20


def _rejects(
    h: Harness, sender: int, msg: ClientMessage, kind: type[ProtocolError], status: str
) -> ProtocolError:
    before = _snapshot(h)
    error = h.send(sender, msg)
    assert isinstance(error, kind), error
    assert error.status == status
    assert _snapshot(h) == before
    return error


@pytest.mark.parametrize("phase", COLLECTING, ids=lambda p: p.value)
def test_stale_unknown_and_misattributed_messages_change_nothing(phase: ServerPhase) -> None:
    h = Harness(_config(phase, dim=6, round_=7), seed="t20")
    replies = _answers(h, phase)
    (msg,) = replies[2]
    for other_round in (6, 8, 0):
        _rejects(
            h, 2, dataclasses.replace(msg, round=other_round), WrongPhase, "FAILED_PRECONDITION"
        )
    _rejects(h, 99, dataclasses.replace(msg, client=99), UnknownClient, "PERMISSION_DENIED")
    _rejects(h, 0, dataclasses.replace(msg, client=0), UnknownClient, "PERMISSION_DENIED")
    _rejects(h, 3, msg, AuthenticationFailed, "UNAUTHENTICATED")  # 3 sends 2's message
    _rejects(h, 2, dataclasses.replace(msg, client=3), AuthenticationFailed, "UNAUTHENTICATED")
    # None of that hurt clients 2 and 3: the round completes over everyone.
    h.deliver_up(replies)
    _finish(h)
    h.assert_exact(h.config.clients)


def test_messages_for_another_phase_change_nothing() -> None:
    h = Harness(small_config(5, dim=6), seed="t20p")
    replies = _answers(h, ServerPhase.SHARE)
    (share_keys,) = replies[2]
    size = packed_size(h.config.vector_length, h.config.modulus_bits)
    future = MaskedInput(2, h.config.round, bytes(size))
    _rejects(h, 2, future, WrongPhase, "FAILED_PRECONDITION")
    _rejects(
        h, 2, ConsistencySignature(2, h.config.round, bytes(64)), WrongPhase, "FAILED_PRECONDITION"
    )
    _rejects(h, 2, UnmaskShares(2, h.config.round, (), ()), WrongPhase, "FAILED_PRECONDITION")
    past = next(s.msg for s in h.up if s.client == 2 and isinstance(s.msg, AdvertiseKeys))
    altered = dataclasses.replace(past, c_public=past.s_public)
    _rejects(h, 2, altered, WrongPhase, "FAILED_PRECONDITION")
    before = _snapshot(h)
    assert h.send(2, past) is None  # its exact copy: a retry whose ack was lost, a no-op
    assert _snapshot(h) == before
    h.deliver_up(replies)
    h.advance()
    before = _snapshot(h)
    assert h.send(2, share_keys) is None  # its exact retry after the phase closed: a no-op
    assert _snapshot(h) == before
    other = replies[3][0]
    assert isinstance(other, ShareKeys)
    late = dataclasses.replace(other, client=2)  # not what 2 had sent: still refused
    _rejects(h, 2, late, WrongPhase, "FAILED_PRECONDITION")
    _finish(h)
    h.assert_exact(h.config.clients)


def test_clients_outside_the_round_are_refused() -> None:
    """A client silent in an earlier phase, or excluded, cannot come back."""
    h = Harness(small_config(6, dim=6), seed="t20x")  # t = 5
    h.step(drop=[6])  # 6 never advertised
    replies = h.deliver_down()
    assert 6 not in replies
    forged = ShareKeys(6, h.config.round, (), bytes(32), b"")
    error = _rejects(h, 6, forged, WrongPhase, "FAILED_PRECONDITION")
    assert "previous phase" in str(error)
    (own,) = replies[5]
    assert isinstance(own, ShareKeys)
    assert isinstance(
        h.send(5, dataclasses.replace(own, self_mask_commitment=b"short")), InvalidMessage
    )
    assert 5 in h.server.excluded
    _rejects(h, 5, own, WrongPhase, "FAILED_PRECONDITION")


def test_share_keys_from_another_session_fail_authentication() -> None:
    """Same round number, different nonce: the signature binds the session, so it fails."""
    config = small_config(5, dim=6)
    other = small_config(5, dim=6, seed=b"another session")
    assert other.round == config.round and other.nonce != config.nonce
    replayed = _answers(Harness(other, seed="t20s"), ServerPhase.SHARE)[2][0]
    h = Harness(config, seed="t20s")
    _answers(h, ServerPhase.SHARE)
    before = _snapshot(h)
    error = h.send(2, replayed)
    assert isinstance(error, AuthenticationFailed), error
    assert error.status == "UNAUTHENTICATED"
    assert h.server.payload.sum.tobytes() == before[3]
    assert 2 in h.server.excluded


# ---------------------------------------------------------------------- T21


N21 = 6  # t = 5


def _flip_share(culprit: int, victim: int) -> Callable[[int, ClientMessage], ClientMessage]:
    """Corrupt the culprit's ciphertext for ``victim`` in flight, keeping its length."""

    def tamper(cid: int, msg: ClientMessage) -> ClientMessage:
        if cid != culprit or not isinstance(msg, ShareKeys):
            return msg
        shares = tuple(
            EncryptedShare(s.sender, s.recipient, s.ciphertext[:-1] + bytes([s.ciphertext[-1] ^ 1]))
            if s.recipient == victim
            else s
            for s in msg.shares
        )
        return dataclasses.replace(msg, shares=shares)

    return tamper


def test_undecryptable_share_names_the_sender_and_the_round_goes_on() -> None:
    culprit, victim = 2, 4
    h = Harness(small_config(N21, dim=10), seed="t21")
    h.run(tamper=_flip_share(culprit, victim))
    assert h.clients[victim].phase is ClientPhase.ABORTED
    assert h.clients[victim].abort_reason == f"undecryptable shares from client {culprit}"
    assert h.server.excluded == {
        victim: f"client aborted: undecryptable shares from client {culprit}"
    }
    # The victim sent shares (U2) but no masked input: it is handled as a dropout.
    survivors = [c for c in h.config.clients if c != victim]
    h.assert_exact(survivors)
    for replies in h.releases.values():
        assert dict(replies[0].key_shares).keys() == {victim}


def test_swapped_share_ciphertexts_are_detected() -> None:
    """A ciphertext relabelled for another recipient fails its associated data."""
    culprit = 2
    h = Harness(small_config(N21, dim=10), seed="t21s")

    def swap(cid: int, msg: ClientMessage) -> ClientMessage:
        if cid != culprit or not isinstance(msg, ShareKeys):
            return msg
        by = {s.recipient: s for s in msg.shares}
        shares = tuple(
            EncryptedShare(
                s.sender, s.recipient, by[{3: 4, 4: 3}.get(s.recipient, s.recipient)].ciphertext
            )
            for s in msg.shares
        )
        return dataclasses.replace(msg, shares=shares)

    h.run(tamper=swap)
    assert h.server.phase is ServerPhase.ABORTED  # two victims: 4 < t = 5 remain
    for victim in (3, 4):
        assert h.clients[victim].abort_reason == f"undecryptable shares from client {culprit}"
    assert h.releases == {}


def _tamper_share(share: bytes) -> bytes:
    """The same share with limb 0 moved by one: still a valid field element."""
    limb = int.from_bytes(share[:4], "little")
    return ((limb + 1) % PRIME).to_bytes(4, "little") + share[4:]


def _tamper_reply(
    culprit: int, owner: int, *, key: bool
) -> Callable[[int, ClientMessage], ClientMessage]:
    def tamper(cid: int, msg: ClientMessage) -> ClientMessage:
        if cid != culprit or not isinstance(msg, UnmaskShares):
            return msg

        def bad(pairs: tuple[tuple[int, bytes], ...]) -> tuple[tuple[int, bytes], ...]:
            return tuple((o, _tamper_share(s) if o == owner else s) for o, s in pairs)

        if key:
            return dataclasses.replace(msg, key_shares=bad(msg.key_shares))
        return dataclasses.replace(msg, self_mask_shares=bad(msg.self_mask_shares))

    return tamper


def test_tampered_self_mask_share_is_found_when_a_spare_exists() -> None:
    """5 holders, t = 4: the bad share is left out and the sum is exact.

    One spare share cannot confirm the blame (two cancelling liars could frame
    an honest holder), so the sender is only recorded as a suspect.
    """
    h = Harness(small_config(5, dim=10), seed="t21b")  # 1 is among the first t holders
    h.run(tamper=_tamper_reply(culprit=1, owner=3, key=False))
    h.assert_exact(h.config.clients)
    assert h.server.suspects == {1: "sent a bad share of client 3's secret"}
    assert h.server.disputes == {}


def test_tampered_self_mask_share_sender_is_named_with_two_spares() -> None:
    config = small_config(7, dim=10)
    assert config.threshold == 5  # 7 holders answer: two spares confirm the blame
    h = Harness(config, seed="t21b")
    h.run(tamper=_tamper_reply(culprit=1, owner=3, key=False))
    h.assert_exact(h.config.clients)
    # Proven: 1's share of 3's seed is off 3's polynomial; not which of the two is at fault.
    assert list(h.server.disputes) == [(1, 3)]
    assert "altered by 1 or dealt so by 3" in h.server.disputes[(1, 3)]


def test_tampered_self_mask_share_without_a_spare_aborts_instead_of_a_wrong_sum() -> None:
    h = Harness(small_config(5, dim=10), seed="t21b")
    h.run({"unmask": [5]}, tamper=_tamper_reply(culprit=1, owner=3, key=False))
    assert h.server.phase is ServerPhase.ABORTED
    assert h.server.result is None
    assert h.server.abort_reason == (
        "unmasking failed: shares of client 3 do not rebuild its committed secret"
    )
    for c in (1, 2, 3, 4):
        assert h.clients[c].phase is ClientPhase.ABORTED


def test_tampered_key_share_without_a_spare_aborts_instead_of_a_wrong_sum() -> None:
    h = Harness(small_config(5, dim=10), seed="t21k")  # 5 drops: 4 = t holders answer
    h.run({"masked": [5]}, tamper=_tamper_reply(culprit=2, owner=5, key=True))
    assert h.server.phase is ServerPhase.ABORTED
    assert h.server.result is None
    assert h.server.abort_reason == (
        "unmasking failed: shares of client 5 do not rebuild its committed secret"
    )


def test_tampered_key_share_is_found_when_a_spare_exists() -> None:
    config = small_config(7, dim=10)
    assert config.threshold == 5  # 7 drops, 6 holders answer: one spare
    h = Harness(config, seed="t21k")
    h.run({"masked": [7]}, tamper=_tamper_reply(culprit=2, owner=7, key=True))
    h.assert_exact(range(1, 7))
    assert h.server.suspects == {2: "sent a bad share of client 7's secret"}


def _two_liars(h: Harness) -> None:
    """Holders 1 and 2 both shift limb 0 of their share of client 3's seed by one."""

    def both(cid: int, msg: ClientMessage) -> ClientMessage:
        if cid in (1, 2):
            return _tamper_reply(cid, owner=3, key=False)(cid, msg)
        return msg

    h.run(tamper=both)


def test_two_tampered_shares_never_give_a_wrong_sum() -> None:
    h = Harness(small_config(5, dim=10), seed="t21b")
    _two_liars(h)
    if h.server.phase is ServerPhase.COMPLETED:
        h.assert_exact(h.config.clients)  # only a secret that passes its commitment is used
    else:
        assert h.server.result is None
        assert h.server.abort_reason == (
            "unmasking failed: shares of client 3 do not rebuild its committed secret"
        )


def test_two_tampered_shares_never_blame_an_honest_holder() -> None:
    """With holders {1, 2, 4, 5} the Lagrange weights of 1 and 2 at 0 are ±10/3, so
    equal errors from 1 and 2 cancel once 3's share is left out: the seed checks out
    and 3, who is honest, is recorded as the culprit."""
    h = Harness(small_config(5, dim=10), seed="t21b")
    _two_liars(h)
    assert {holder for holder, _ in h.server.disputes} <= {1, 2}


def test_tampered_share_beyond_the_first_t_is_never_used() -> None:
    """The server rebuilds from the first t shares in holder order and checks them."""
    h = Harness(small_config(5, dim=10), seed="t21b")
    h.run(tamper=_tamper_reply(culprit=5, owner=3, key=False))
    h.assert_exact(h.config.clients)


def test_tampered_share_that_rebuilds_an_out_of_range_limb_is_found() -> None:
    """A bad share can also make a rebuilt limb 65536 (not a 16-bit value).

    That happens by chance for about 1 in 4,000 random tamperings; here the
    tampering is chosen to hit it. With a spare share the server must still
    find the bad share rather than abort.
    """
    culprit, owner = 1, 3
    h = Harness(small_config(5, dim=10), seed="t21b")
    t = h.config.threshold
    first_t = list(range(1, t + 1))  # all 5 answer; rebuilt from holders 1..4
    lam = int(shamir.lagrange_at_zero(first_t)[first_t.index(culprit)])

    def tamper(cid: int, msg: ClientMessage) -> ClientMessage:
        if cid != culprit or not isinstance(msg, UnmaskShares):
            return msg
        b = h.clients[owner]._b  # the test knows the secret; the culprit would not
        assert b is not None
        limb0 = int(shamir.secrets_to_limbs([b])[0, 0])
        delta = (65536 - limb0) * pow(lam, -1, PRIME) % PRIME
        pairs = []
        for o, share in msg.self_mask_shares:
            if o == owner:
                y = int.from_bytes(share[:4], "little")
                share = ((y + delta) % PRIME).to_bytes(4, "little") + share[4:]
            pairs.append((o, share))
        return dataclasses.replace(msg, self_mask_shares=tuple(pairs))

    h.run(tamper=tamper)
    h.assert_exact(h.config.clients)
    named = {holder for holder, _ in h.server.disputes} | set(h.server.suspects)
    assert named == {culprit}


# ---------------------------------------------------------------------- T23


def test_overflowing_configs_are_refused() -> None:
    base = small_config(4, dim=3, levels=1 << 8, max_weight=3)
    assert base.modulus_bits == (4 * 255 * 3).bit_length() == 12  # 3060 < 2^12
    with pytest.raises(OverflowRisk):
        dataclasses.replace(base, modulus_bits=11)
    with pytest.raises(OverflowRisk):
        small_config(4, dim=3, levels=1 << 8, max_weight=3, modulus_bits=11)
    with pytest.raises(OverflowRisk):
        dataclasses.replace(base, max_weight=5)  # 4·255·5 = 5100 ≥ 2^12
    with pytest.raises(OverflowRisk):
        dataclasses.replace(base, levels=343)  # 4·342·3 = 4104 ≥ 2^12
    assert dataclasses.replace(base, levels=342).levels == 342  # 4·341·3 = 4092 < 2^12


def test_no_wrap_boundary_is_exact() -> None:
    """n·(Q−1)·w = 2^k − 1 is allowed, = 2^k is refused."""
    dataclasses.replace(small_config(3, dim=3, levels=6), modulus_bits=4)  # 15
    dataclasses.replace(small_config(3, dim=3, levels=2, max_weight=5), modulus_bits=4)  # 15
    with pytest.raises(OverflowRisk):
        dataclasses.replace(small_config(4, dim=3, levels=5), modulus_bits=4)  # 16
    with pytest.raises(OverflowRisk):
        dataclasses.replace(small_config(2, dim=3, levels=2, max_weight=8), modulus_bits=4)  # 16


def test_honest_client_refuses_out_of_range_input() -> None:
    config = small_config(5, dim=6, levels=16, modulus_bits=32)
    h = Harness(config, seed="t23", without_input={1, 2})
    h.step()  # the config is known now, so set_levels checks against it
    me = h.clients[1]
    with pytest.raises(UnexpectedCall, match="levels must be integers in"):
        me.set_levels(np.full(6, 16, dtype=np.uint64), weight=1, model_hash=config.model_hash)
    with pytest.raises(UnexpectedCall, match="weight must be in"):
        h.clients[2].set_levels(
            np.zeros(6, dtype=np.uint64), weight=2, model_hash=config.model_hash
        )


N23 = 5


def _rogue_round(monkeypatch: pytest.MonkeyPatch, rogue: int) -> Harness:
    """A round where ``rogue`` skips its input checks (a patched client build)."""
    config = small_config(N23, dim=6, levels=16, modulus_bits=32)
    h = Harness(config, seed="t23", without_input={rogue})
    monkeypatch.setattr(h.clients[rogue], "_check_input", lambda config: None)
    return h


def test_honest_round_with_the_rogue_config_completes() -> None:
    """Control for the rogue tests below: same config and seed, nobody cheats."""
    config = small_config(N23, dim=6, levels=16, modulus_bits=32)
    h = Harness(config, seed="t23")
    h.run()
    h.assert_exact(config.clients)


def test_rogue_levels_above_the_range_reject_the_round(monkeypatch: pytest.MonkeyPatch) -> None:
    rogue = 2
    h = _rogue_round(monkeypatch, rogue)
    h.levels[rogue] = np.full(h.config.dim, 10 * (h.config.levels - 1), dtype=np.uint64)
    h.set_input(rogue)
    h.run()
    assert h.server.phase is ServerPhase.ABORTED
    assert h.server.result is None
    assert h.server.abort_reason == (
        "unmasking failed: aggregate out of range: a client sent an inconsistent weight"
    )


def _shift(
    rogue: int, coordinate: int, delta: int
) -> Callable[[int, ClientMessage], ClientMessage]:
    """The rogue's masked input with ``delta`` added to one word: masking is additive
    mod 2^k, so this is exactly the masked input of values shifted by ``delta``."""

    def tamper(cid: int, msg: ClientMessage) -> ClientMessage:
        if cid != rogue or not isinstance(msg, MaskedInput):
            return msg
        config = small_config(N23, dim=6, levels=16, modulus_bits=32)
        words = unpack(msg.payload, config.vector_length, config.modulus_bits)
        words[coordinate] = (int(words[coordinate]) + delta) % (1 << config.modulus_bits)
        return dataclasses.replace(msg, payload=pack(words, config.modulus_bits))

    return tamper


def test_rogue_weight_above_the_maximum_rejects_the_round() -> None:
    config = small_config(N23, dim=6, levels=16, modulus_bits=32)
    h = Harness(config, seed="t23")
    h.run(tamper=_shift(3, config.dim, +6))  # weight coordinate 7, max_weight is 1
    assert h.server.phase is ServerPhase.ABORTED
    assert h.server.result is None
    assert h.server.abort_reason == (
        "unmasking failed: weight sum exceeds what the survivors can contribute"
    )


def test_rogue_weight_coordinate_below_its_multiplier_rejects_the_round() -> None:
    """Levels multiplied by w = 1 but a weight coordinate of 0: caught when it shows."""
    config = small_config(N23, dim=6, levels=16, modulus_bits=32)
    top = {c: np.full(config.dim, config.levels - 1, dtype=np.uint64) for c in config.clients}
    h = Harness(config, seed="t23w", levels=top)
    h.run(tamper=_shift(4, config.dim, -1))
    assert h.server.phase is ServerPhase.ABORTED
    assert h.server.result is None
    assert h.server.abort_reason == (
        "unmasking failed: aggregate out of range: a client sent an inconsistent weight"
    )


def test_rogue_shift_is_exact_when_in_range() -> None:
    """Control for the tampering helper: a shift inside the range is simply counted."""
    config = small_config(N23, dim=6, levels=16, modulus_bits=32)
    h = Harness(config, seed="t23")
    h.run(tamper=_shift(2, 0, +1))
    h.levels[2] = h.levels[2].copy()
    h.levels[2][0] += 1
    h.assert_exact(config.clients)
