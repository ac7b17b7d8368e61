"""T10–T16: a malicious server against honest client machines, with an oracle.

Each test scripts an "evil server": it runs the honest ServerMachine where the
attack does not need to deviate, and crafts the messages where it does. The
oracle then gets everything the server saw (plus what colluding clients hold)
and tries to rebuild the target's input. Passing means honest clients abort
and the oracle fails; every attack is also shown to *succeed* when the defence
is switched off (semi-honest profile, or a threshold below the safe bound), so
these tests can fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pytest

from protocol import session as ses
from protocol.build import make_config
from protocol.client import ClientMachine, ClientPhase
from protocol.config import Profile, RoundConfig
from protocol.graph import graph_from_seed
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShare,
    KeyList,
    MaskedInput,
    RoundStart,
    ServerMessage,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
)
from protocol.policy import ClientPolicy
from protocol.server import ServerMachine
from protocol.simulation import simulate
from secagg.masking import pairwise_seed, remove_masks, self_mask_seed
from secagg.packing import unpack
from secagg.primitives import aead, shamir
from secagg.primitives.kdf import derive_key
from secagg.primitives.prg import word_dtype
from secagg.primitives.signing import SigningKey, sign, signing_key
from secagg.primitives.x25519 import X25519KeyPair, x25519_keypair, x25519_public
from secagg.rng import DeterministicRandomSource, uniform_below

TARGET = 1


@dataclass
class World:
    """Honest clients, their inputs, and everything the (evil) server saw."""

    config: RoundConfig
    clients: dict[int, ClientMachine]
    signing: dict[int, SigningKey]
    levels: dict[int, np.ndarray]
    server: ServerMachine
    transcript: list[tuple[int, ClientMessage]] = field(default_factory=list)

    def deliver(self, cid: int, msg: ServerMessage) -> list[ClientMessage]:
        replies = self.clients[cid].handle(msg)
        self.transcript.extend((cid, r) for r in replies)
        return replies

    def honest_phase(self, outbox: Iterable[tuple[int, ServerMessage]]) -> None:
        """Deliver ``outbox`` and feed the replies to the honest server machine."""
        for cid, msg in outbox:
            for reply in self.deliver(cid, msg):
                self.server.receive(cid, reply)

    def sent(self, kind: type) -> list[tuple[int, ClientMessage]]:
        return [(c, m) for c, m in self.transcript if isinstance(m, kind)]


def build(
    n: int = 10,
    *,
    t: int | None = None,
    profile: Profile = "active",
    policy: ClientPolicy | None = None,
    seed: int = 7,
    dim: int = 16,
    round_: int = 0,
    signing: dict[int, SigningKey] | None = None,
) -> World:
    config = make_config(
        clients=n, dim=dim, threshold=t, profile=profile, round_=round_, seed=b"evil"
    )
    if profile == "semi-honest":  # the controls opt in, as an operator would have to
        policy = (policy or ClientPolicy()).with_opt_in("semi-honest")
    rng = DeterministicRandomSource(seed * 7919 + round_)
    signing = signing or {c: signing_key(rng) for c in config.clients}
    roster = {c: k.public for c, k in signing.items()}
    clients = {
        c: ClientMachine(
            c,
            rng=rng.fork(f"c{c}"),
            signing_key=signing[c],
            roster=roster,
            policy=policy,
        )
        for c in config.clients
    }
    levels = {c: uniform_below(rng, config.levels, dim).astype(np.uint64) for c in config.clients}
    for c, m in clients.items():
        m.set_levels(levels[c], weight=1, model_hash=config.model_hash)
    return World(config, clients, signing, levels, ServerMachine(config, roster=roster))


def run_to_masked(w: World) -> None:
    """Honest rounds 0–2; afterwards the server holds every masked input."""
    w.honest_phase(w.server.start())
    for _ in range(2):
        w.honest_phase(w.server.advance())


# ---------------------------------------------------------------- the oracle


def oracle(w: World, target: int = TARGET, colluders: Iterable[int] = ()) -> np.ndarray | None:
    """Try to rebuild ``target``'s levels from the server's view plus colluders' state.

    Returns the recovered vector, or None when the view holds fewer than t
    self-mask shares or fewer than t mask-key shares of the target.
    """
    config, t = w.config, w.config.threshold
    b_shares: dict[int, bytes] = {}
    s_shares: dict[int, bytes] = {}
    for cid, msg in w.sent(UnmaskShares):
        assert isinstance(msg, UnmaskShares)
        for owner, share in msg.self_mask_shares:
            if owner == target:
                b_shares[cid] = share
        for owner, share in msg.key_shares:
            if owner == target:
                s_shares[cid] = share
    for c in colluders:  # a colluding client hands over both shares it holds
        held = w.clients[c]._held.get(target)
        if held:
            s_shares[c], b_shares[c] = held
    if len(b_shares) < t or len(s_shares) < t:
        return None
    session = w.server.session_id

    def rebuild(shares: dict[int, bytes]) -> bytes:
        holders = sorted(shares)[:t]
        stack = np.stack([shamir.share_from_bytes(shares[h]) for h in holders])[:, None, :]
        xs = [config.index_of(h) for h in holders]
        return shamir.reconstruct(xs, stack, t=t)[0]

    b, s_sk = rebuild(b_shares), rebuild(s_shares)
    keys = {c: m for c, m in w.sent(AdvertiseKeys) if isinstance(m, AdvertiseKeys)}
    if x25519_public(s_sk) != keys[target].s_public:
        return None
    masked = [m for c, m in w.sent(MaskedInput) if c == target]
    assert masked and isinstance(masked[0], MaskedInput)
    y = unpack(masked[0].payload, config.vector_length, config.modulus_bits)
    y = y.astype(word_dtype(config.modulus_bits))
    senders = {c for c, m in w.sent(ShareKeys)}
    graph = graph_from_seed(config.n, config.degree, ses.graph_seed(session))
    me = config.index_of(target) - 1
    peers = {config.clients[i] for i in graph.holders(me)} & senders - {target}
    pair = X25519KeyPair(s_sk)
    orphaned = [
        (
            target,
            v,
            pairwise_seed(pair.exchange(keys[v].s_public), session_id=session, u=target, v=v),
        )
        for v in sorted(peers)
    ]
    seeds = [self_mask_seed(b, session_id=session, owner=target)]
    clear = remove_masks(y, bits=config.modulus_bits, self_seeds=seeds, orphaned_pairs=orphaned)
    return clear[: config.dim].astype(np.uint64)


def recovered(w: World, colluders: Iterable[int] = ()) -> bool:
    got = oracle(w, TARGET, colluders)
    return got is not None and np.array_equal(got, w.levels[TARGET])


def never_both(w: World) -> None:
    """Invariant: no honest client revealed both share kinds of one peer."""
    released: dict[int, tuple[set[int], set[int]]] = {}
    for cid, msg in w.sent(UnmaskShares):
        assert isinstance(msg, UnmaskShares)
        alive, dead = released.setdefault(cid, (set(), set()))
        alive |= {o for o, _ in msg.self_mask_shares}
        dead |= {o for o, _ in msg.key_shares}
    for alive, dead in released.values():
        assert not alive & dead


def test_oracle_recovers_an_input_given_both_secrets() -> None:
    """Positive control: if the server had both share kinds, the oracle would succeed."""
    w = build(5, profile="semi-honest")
    run_to_masked(w)
    assert oracle(w) is None  # nothing revealed yet
    assert recovered(w, colluders=[2, 3, 4, 5])  # t=4 colluders hand over everything


# ---------------------------------------------------------------- T10 both shares


def test_t10_second_unmask_request_aborts_without_second_reveal() -> None:
    w = build(10, profile="semi-honest")
    run_to_masked(w)
    everyone = w.config.clients
    others = tuple(c for c in everyone if c != TARGET)
    first = w.deliver(2, UnmaskRequest(everyone, ()))
    second = w.deliver(2, UnmaskRequest(others, ()))
    assert isinstance(first[0], UnmaskShares)
    assert [type(m) for m in second] == [ClientAbort]
    assert w.clients[2].phase is ClientPhase.ABORTED
    never_both(w)


@pytest.mark.parametrize("bad", ["duplicate", "outsider", "self_missing"])
def test_t10_malformed_survivor_lists_abort(bad: str) -> None:
    w = build(10, profile="semi-honest")
    run_to_masked(w)
    survivors = {
        "duplicate": (*w.config.clients, TARGET),
        "outsider": (*w.config.clients, 99),
        "self_missing": tuple(c for c in w.config.clients if c != 2),
    }[bad]
    replies = w.deliver(2, UnmaskRequest(survivors, ()))
    assert [type(m) for m in replies] == [ClientAbort]
    assert not w.sent(UnmaskShares)


def split_view_attack(w: World, group_a: list[int], group_b: list[int]) -> None:
    """Tell group A the target survived and group B that it dropped (semi-honest flow)."""
    everyone = w.config.clients
    without = tuple(c for c in everyone if c != TARGET)
    for c in group_a:
        w.deliver(c, UnmaskRequest(everyone, ()))
    for c in group_b:
        w.deliver(c, UnmaskRequest(without, ()))


def test_t10_split_view_succeeds_against_semi_honest_with_low_threshold() -> None:
    """Control: without a consistency round and with t ≤ n/2 the attack works."""
    w = build(10, t=5, profile="semi-honest", policy=ClientPolicy(colluders=0, min_honest=1))
    run_to_masked(w)
    split_view_attack(w, [1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert recovered(w)


def test_t10_split_view_fails_at_the_default_threshold() -> None:
    w = build(10, profile="semi-honest")  # t = 7
    run_to_masked(w)
    split_view_attack(w, [1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert not recovered(w)
    never_both(w)


# ---------------------------------------------------------------- T11 consistency round


def consistency_split(
    w: World, group_a: list[int], group_b: list[int], colluders: list[int]
) -> None:
    """Show U3 to group A and U3 minus the target to group B; colluders sign both."""
    everyone = w.config.clients
    without = tuple(c for c in everyone if c != TARGET)
    sigs: dict[tuple[int, ...], list[tuple[int, bytes]]] = {everyone: [], without: []}
    for view, group in ((everyone, group_a), (without, group_b)):
        for c in group:
            for reply in w.deliver(c, ConsistencyRequest(view)):
                if isinstance(reply, ConsistencySignature):
                    sigs[view].append((c, reply.signature))
        for c in colluders:
            fields = ses.survivors_fields(w.server.session_id, view)
            sigs[view].append((c, sign(w.signing[c], *fields)))
    for view, group in ((everyone, group_a), (without, group_b)):
        for c in group:
            w.deliver(c, UnmaskRequest(view, tuple(sigs[view])))


def test_t11_split_view_aborts_with_consistency_round() -> None:
    # t = 6 is the safe bound for n = 10 with no colluders; each half has only 5 signatures.
    policy = ClientPolicy(colluders=0)
    w = build(10, t=6, policy=policy)
    run_to_masked(w)
    group_a, group_b = [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]
    consistency_split(w, group_a, group_b, colluders=[])
    assert all(w.clients[c].phase is ClientPhase.ABORTED for c in group_a + group_b)
    assert not w.sent(UnmaskShares)
    assert not recovered(w)


def test_t11_split_view_succeeds_when_threshold_is_below_the_collusion_bound() -> None:
    """Control: 2 colluders sign both views; t = 6 < (n + n_C)/2 + 1 = 7 lets both reach t."""
    w = build(10, t=6, policy=ClientPolicy(colluders=0))
    run_to_masked(w)
    colluders = [9, 10]
    consistency_split(w, [1, 2, 3, 4], [5, 6, 7, 8], colluders)
    assert recovered(w, colluders)


def test_t11_validator_refuses_that_threshold_when_colluders_are_assumed() -> None:
    w = build(10, t=6, policy=ClientPolicy(colluders=2))
    replies = w.deliver(2, RoundStart(w.config))
    assert [type(m) for m in replies] == [ClientAbort]
    assert "safe minimum 7" in (w.clients[2].abort_reason or "")


# ---------------------------------------------------------------- T12 fake dropouts


def test_t12_too_few_survivors_aborts() -> None:
    w = build(10)
    run_to_masked(w)
    tiny = (1, 2, 3, 4, 5, 6)  # |U3| = 6 < t = 7
    for c in tiny:
        replies = w.deliver(c, ConsistencyRequest(tiny))
        assert [type(m) for m in replies] == [ClientAbort]
    assert not w.sent(UnmaskShares)


def test_t12_threshold_below_colluders_plus_kmin_is_refused() -> None:
    # Semi-honest bound alone would allow t = 3 with 2 colluders; k_min = 3 raises it to 5.
    w = build(10, t=4, profile="semi-honest", policy=ClientPolicy(colluders=2))
    replies = w.deliver(3, RoundStart(w.config))
    assert [type(m) for m in replies] == [ClientAbort]
    assert "safe minimum 5" in (w.clients[3].abort_reason or "")


# ---------------------------------------------------------------- T13 key injection / Sybils


def advertised(w: World) -> list[AdvertiseKeys]:
    w.honest_phase(w.server.start())
    keys = [m for _, m in w.sent(AdvertiseKeys)]
    assert all(isinstance(k, AdvertiseKeys) for k in keys)
    return keys  # type: ignore[return-value]


def forged_key(rng_seed: int) -> bytes:
    return x25519_keypair(DeterministicRandomSource(rng_seed)).public


def tamper(keys: list[AdvertiseKeys], how: str, w: World) -> list[AdvertiseKeys]:
    k = list(keys)
    if how == "injected_unsigned":
        k[4] = dataclasses.replace(k[4], s_public=forged_key(1))
    elif how == "sybil_empty_signature":
        k[4] = dataclasses.replace(k[4], c_public=forged_key(2), signature=b"")
    elif how == "duplicated_key":
        k[4] = dataclasses.replace(k[4], s_public=k[5].s_public)
    elif how == "own_key_omitted":
        k = [x for x in k if x.client != 2]
    elif how == "own_key_altered":
        k[1] = dataclasses.replace(k[1], c_public=forged_key(3))
    elif how == "too_many":
        k.append(dataclasses.replace(k[4], client=99))
    elif how == "too_few":
        k = k[:6]
        k.append(keys[1]) if keys[1] not in k else None
    elif how == "wrong_size":
        k[4] = dataclasses.replace(k[4], s_public=k[4].s_public[:31])
    elif how == "repeated_client":
        k.append(k[4])
    elif how == "foreign_round":
        k[4] = dataclasses.replace(k[4], round=5)
    else:
        raise AssertionError(how)
    return k


@pytest.mark.parametrize(
    "how",
    [
        "injected_unsigned",
        "sybil_empty_signature",
        "duplicated_key",
        "own_key_omitted",
        "own_key_altered",
        "too_many",
        "too_few",
        "wrong_size",
        "repeated_client",
        "foreign_round",
    ],
)
def test_t13_key_list_tampering_aborts_in_round_one(how: str) -> None:
    w = build(10)
    keys = tamper(advertised(w), how, w)
    replies = w.deliver(2, KeyList(tuple(keys)))
    assert [type(m) for m in replies] == [ClientAbort], how
    assert w.clients[2].phase is ClientPhase.ABORTED
    assert not w.sent(ShareKeys)  # nothing was encrypted to any injected key


def test_t13_low_order_key_signed_by_a_colluder_aborts() -> None:
    w = build(10)
    keys = advertised(w)
    bad = bytes(32)  # the all-zero u-coordinate: a low-order point
    fields = ses.advertise_fields(w.config, 5, keys[4].c_public, bad)
    keys[4] = dataclasses.replace(keys[4], s_public=bad, signature=sign(w.signing[5], *fields))
    replies = w.deliver(2, KeyList(tuple(keys)))
    assert [type(m) for m in replies] == [ClientAbort]
    assert "invalid" in (w.clients[2].abort_reason or "")


class SybilServer:
    """The server invents every client but the target, with keys it holds."""

    def __init__(self, w: World) -> None:
        self.w = w
        rng = DeterministicRandomSource(b"sybil")
        self.c = {c: x25519_keypair(rng) for c in w.config.clients if c != TARGET}
        self.s = {c: x25519_keypair(rng) for c in w.config.clients if c != TARGET}
        self.rng = rng

    def attack(self) -> bool:
        w, config = self.w, self.w.config
        target_keys = w.deliver(TARGET, RoundStart(config))[0]
        assert isinstance(target_keys, AdvertiseKeys)
        keys = [target_keys] + [
            AdvertiseKeys(c, config.round, self.c[c].public, self.s[c].public, b"")
            for c in sorted(self.c)
        ]
        keys.sort(key=lambda k: k.client)
        replies = w.deliver(TARGET, KeyList(tuple(keys)))
        if not replies or not isinstance(replies[0], ShareKeys):
            return False
        session = ses.session_id(config, keys)
        # Decrypt the target's shares sent to the Sybils: the server holds their keys.
        b_shares, s_shares = {}, {}
        for item in replies[0].shares:
            shared = self.c[item.recipient].exchange(target_keys.c_public)
            key = derive_key(
                shared,
                label="share-encryption",
                session_id=session,
                context=(TARGET, item.recipient),
            )
            aad = ses.share_aad(session, TARGET, item.recipient)
            _, _, ks, bs = ses.parse_share_plaintext(
                aead.open_sealed(key, item.ciphertext, aad=aad)
            )
            s_shares[config.index_of(item.recipient)] = ks
            b_shares[config.index_of(item.recipient)] = bs
        # Send the target well-formed shares from every Sybil so it masks its input.
        bundle = []
        for c in sorted(self.c):
            secrets = [self.s[c].private, self.rng.random_bytes(32)]
            share = shamir.split_at(secrets, xs=[config.index_of(TARGET)], t=1, rng=self.rng)[0]
            plain = ses.share_plaintext(
                c, TARGET, shamir.shares_to_bytes(share[0]), shamir.shares_to_bytes(share[1])
            )
            shared = self.c[c].exchange(target_keys.c_public)
            key = derive_key(
                shared, label="share-encryption", session_id=session, context=(c, TARGET)
            )
            ct = aead.seal(key, plain, aad=ses.share_aad(session, c, TARGET), rng=self.rng)
            bundle.append(EncryptedShare(c, TARGET, ct))
        masked = w.deliver(TARGET, ShareBundle(config.clients, tuple(bundle)))
        if not masked or not isinstance(masked[0], MaskedInput):
            return False
        t = config.threshold

        def rebuild(shares: dict[int, bytes]) -> bytes:
            xs = sorted(shares)[:t]
            stack = np.stack([shamir.share_from_bytes(shares[x]) for x in xs])[:, None, :]
            return shamir.reconstruct(xs, stack, t=t)[0]

        b, s_sk = rebuild(b_shares), rebuild(s_shares)
        y = unpack(masked[0].payload, config.vector_length, config.modulus_bits)
        y = y.astype(word_dtype(config.modulus_bits))
        pair = X25519KeyPair(s_sk)
        orphaned = [
            (
                TARGET,
                c,
                pairwise_seed(pair.exchange(self.s[c].public), session_id=session, u=TARGET, v=c),
            )
            for c in sorted(self.s)
        ]
        clear = remove_masks(
            y,
            bits=config.modulus_bits,
            self_seeds=[self_mask_seed(b, session_id=session, owner=TARGET)],
            orphaned_pairs=orphaned,
        )
        return bool(np.array_equal(clear[: config.dim], w.levels[TARGET]))


def test_t13_sybil_attack_succeeds_against_semi_honest_profile() -> None:
    """Control: without signed keys the server can surround the target with Sybils."""
    w = build(10, profile="semi-honest")
    assert SybilServer(w).attack()


def test_t13_sybil_attack_fails_against_active_profile() -> None:
    w = build(10)
    assert not SybilServer(w).attack()
    assert w.clients[TARGET].phase is ClientPhase.ABORTED
    assert "signature" in (w.clients[TARGET].abort_reason or "")


# ---------------------------------------------------------------- T14 model inconsistency


def test_t14_one_client_shown_another_model_aborts_before_masking() -> None:
    w = build(10)
    other = dataclasses.replace(w.config, model_hash=hashlib.sha256(b"crafted").digest())
    victim = 3
    # The victim's own input was computed on the model it received: the crafted one.
    w.clients[victim] = ClientMachine(
        victim,
        rng=DeterministicRandomSource(b"victim"),
        signing_key=w.signing[victim],
        roster={c: k.public for c, k in w.signing.items()},
    )
    w.clients[victim].set_levels(w.levels[victim], weight=1, model_hash=other.model_hash)
    for c in w.config.clients:
        for reply in w.deliver(c, RoundStart(other if c == victim else w.config)):
            w.server.receive(c, reply) if c != victim else None
    victim_keys = next(m for c, m in w.sent(AdvertiseKeys) if c == victim)
    assert isinstance(victim_keys, AdvertiseKeys)
    w.server._phases[w.server.phase].accepted[victim] = victim_keys  # the server accepts it anyway
    w.honest_phase(w.server.advance())
    assert not w.sent(MaskedInput)
    assert not w.sent(ShareKeys)  # every client aborted in round 1
    assert all(m.phase is ClientPhase.ABORTED for m in w.clients.values())


def test_t14_input_from_another_model_aborts_at_round_start() -> None:
    w = build(5)
    fresh = ClientMachine(
        2, rng=DeterministicRandomSource(1), signing_key=w.signing[2], roster={1: b"x"}
    )
    fresh.set_levels(w.levels[2], weight=1, model_hash=bytes(32))
    replies = fresh.handle(RoundStart(w.config))
    assert [type(m) for m in replies] == [ClientAbort]
    assert "model hash" in (fresh.abort_reason or "")


@pytest.mark.parametrize(
    "sessions", [pytest.param(100, id="100"), pytest.param(1000, id="1000", marks=pytest.mark.slow)]
)
def test_t14_no_false_aborts_in_honest_sessions(sessions: int) -> None:
    for s in range(sessions):
        config = make_config(clients=3, dim=4, round_=s, seed=b"honest")
        report = simulate(config, seed=s)
        assert report.completed and report.exact, (s, report.abort_reason)


# ---------------------------------------------------------------- T16 replay / swap


def test_t16_replayed_share_ciphertexts_from_the_previous_session_abort() -> None:
    signing = {c: signing_key(DeterministicRandomSource(c)) for c in range(1, 6)}
    old = build(5, round_=0, signing=signing)
    old.honest_phase(old.server.start())
    old.honest_phase(old.server.advance())
    old_shares = [m for _, m in old.sent(ShareKeys)]

    new = build(5, round_=1, signing=signing)
    new.honest_phase(new.server.start())
    new.honest_phase(new.server.advance())
    # The server forwards last session's ciphertexts to client 2 instead of this session's.
    replayed = tuple(
        s for m in old_shares if isinstance(m, ShareKeys) for s in m.shares if s.recipient == 2
    )
    replies = new.deliver(2, ShareBundle(new.config.clients, replayed))
    assert [type(m) for m in replies] == [ClientAbort]
    assert "undecryptable" in (new.clients[2].abort_reason or "")


def test_t16_swapped_share_ciphertexts_abort() -> None:
    w = build(5)
    w.honest_phase(w.server.start())
    w.honest_phase(w.server.advance())
    w.server.advance()  # collect shares
    shares = {
        (s.sender, s.recipient): s
        for _, m in w.sent(ShareKeys)
        if isinstance(m, ShareKeys)
        for s in m.shares
    }
    # Client 2 receives 3's ciphertext labelled as 4's and vice versa.
    swapped = [
        EncryptedShare(4, 2, shares[(3, 2)].ciphertext),
        EncryptedShare(3, 2, shares[(4, 2)].ciphertext),
    ] + [s for (u, v), s in shares.items() if v == 2 and u not in (3, 4)]
    replies = w.deliver(2, ShareBundle(w.config.clients, tuple(swapped)))
    assert [type(m) for m in replies] == [ClientAbort]
    assert w.clients[2].phase is ClientPhase.ABORTED


def tamper_unmask_share(reply: UnmaskShares) -> UnmaskShares:
    """Change one limb of the first self-mask share (still a valid field element)."""
    owner, raw = reply.self_mask_shares[0]
    limbs = shamir.share_from_bytes(raw).copy()
    limbs[0] = (int(limbs[0]) + 1) % shamir.PRIME
    bad = ((owner, shamir.shares_to_bytes(limbs)), *reply.self_mask_shares[1:])
    return dataclasses.replace(reply, self_mask_shares=bad)


def unmask_with_tampering(w: World, liar: int, responders: Iterable[int]) -> None:
    run_to_masked(w)
    requests = dict(w.server.advance())
    for c in responders:
        for reply in w.deliver(c, requests[c]):
            if c == liar and isinstance(reply, UnmaskShares):
                reply = tamper_unmask_share(reply)
            w.server.receive(c, reply)
    w.server.advance()


def test_t21_tampered_unmask_share_is_caught_and_the_round_completes() -> None:
    """With a spare share the bad one is found, its sender named, and the sum stays exact."""
    w = build(5, profile="semi-honest")  # t = 4, five holders
    unmask_with_tampering(w, liar=2, responders=w.config.clients)
    assert w.server.result is not None
    assert 2 in w.server.suspects  # one spare share: blamed, but unconfirmed
    expected = sum(w.levels[c] for c in w.config.clients)
    assert np.array_equal(w.server.result.total, expected)


def test_t21_tampered_unmask_share_without_spares_aborts_not_a_wrong_sum() -> None:
    w = build(5, profile="semi-honest")  # t = 4: exactly four responders, no spare
    unmask_with_tampering(w, liar=2, responders=[1, 2, 3, 4])
    assert w.server.aborted and "unmasking failed" in (w.server.abort_reason or "")
    assert w.server.result is None
