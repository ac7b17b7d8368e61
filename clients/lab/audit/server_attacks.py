"""`secagg audit server`: play a malicious aggregator against the honest client code.

Every attack runs the real :class:`protocol.client.ClientMachine` (the
daemon's) for the victim and the other honest clients, all under the policy
given (a client config's), against a server that forges whatever it likes.
It may use up to n_C enrolled clients: they run the honest code, but the
server reads their secrets and signs with their keys. An independent oracle
then takes everything the server saw (and the colluders' state), strips the
masks where it can, and compares with the victim's true input: an attack
*succeeded* only when the oracle recovers that input exactly. Attacks that
end before masking record how the victim reacted.

The catalogue covers the downgrade classes of issue 14 (profile, mode,
cohort, threshold, graph, differencing, malformed input) and the classic
ones: key substitution, Sybils off the roster, split views at the n_C bound,
config splits, replays from an older session and both-shares requests.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from clients.ledger import ContributionLedger
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
    GraphNonces,
    GraphReveal,
    KeyList,
    MaskedInput,
    RoundStart,
    ServerMessage,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
)
from protocol.policy import ClientPolicy
from protocol.server import ServerMachine, ServerPhase
from secagg.masking import pairwise_seed, remove_masks, self_mask_seed
from secagg.packing import unpack
from secagg.primitives import shamir
from secagg.primitives.prg import word_dtype
from secagg.primitives.signing import SigningKey, sign, signing_key
from secagg.primitives.x25519 import X25519KeyPair, x25519_keypair, x25519_public
from secagg.rng import DeterministicRandomSource, uniform_below

VICTIM = 1
DIM = 16


@dataclass(frozen=True)
class Outcome:
    """One attack's result: did the oracle recover the victim's input, and why (not)."""

    succeeded: bool
    evidence: str


@dataclass
class World:
    """A round's honest machines, their inputs, and everything the server saw."""

    config: RoundConfig
    clients: dict[int, ClientMachine]
    signing: dict[int, SigningKey]
    levels: dict[int, np.ndarray]
    colluders: frozenset[int]
    server: ServerMachine
    seen: list[tuple[int, ClientMessage]] = field(default_factory=list)

    def deliver(self, client: int, msg: ServerMessage) -> list[ClientMessage]:
        try:
            replies = self.clients[client].handle(msg)
        except Exception as exc:  # an escaped exception is a finding
            raise Escaped(f"{type(exc).__name__}: {exc}") from exc
        self.seen.extend((client, r) for r in replies)
        return replies

    def honest(self, outbox: Iterable[tuple[int, ServerMessage]]) -> None:
        """Deliver ``outbox`` and feed what comes back to the honest server machine."""
        for client, msg in outbox:
            for reply in self.deliver(client, msg):
                if not isinstance(reply, ClientAbort):
                    self.server.receive(client, reply)

    def sent(self, kind: type) -> list[tuple[int, ClientMessage]]:
        return [(c, m) for c, m in self.seen if isinstance(m, kind)]

    def victim_reaction(self) -> str:
        m = self.clients[VICTIM]
        if m.phase is ClientPhase.ABORTED:
            return f"victim aborted: {m.abort_reason}"
        return f"victim in phase {m.phase.value}"

    def to_masked(self) -> bool:
        """Honest advertise, share and masked-input phases; False if a client refused."""
        self.honest(self.server.start())
        if self.clients[VICTIM].phase is ClientPhase.ABORTED:
            return False
        early = (ServerPhase.ADVERTISE, ServerPhase.GRAPH, ServerPhase.SHARE)
        while self.server.phase in early:
            self.honest(self.server.advance())
        return bool(self.sent(MaskedInput)) and any(c == VICTIM for c, _ in self.sent(MaskedInput))


class Escaped(Exception):
    """An exception left ``ClientMachine.handle``."""


def build(
    policy: ClientPolicy,
    roster_size: int,
    colluders: int,
    *,
    n: int | None = None,
    cohort: tuple[int, ...] | None = None,
    threshold: int | None = None,
    degree: int | None = None,
    profile: Profile = "active",
    seed: str = "audit-server",
    enrolled: int | None = None,
) -> World:
    """A round over ``cohort`` (default 1..n) of a roster of ``roster_size`` clients.

    The last ``colluders`` members of the cohort collude with the server. The
    clients' roster holds ids up to ``enrolled`` (default all): others are Sybils.
    """
    rng = DeterministicRandomSource(seed)
    members = cohort or tuple(range(1, (n or roster_size) + 1))
    base = make_config(clients=len(members), dim=DIM, profile=profile, degree=degree, seed=b"x")
    config = dataclasses.replace(
        base,
        clients=members,
        threshold=threshold if threshold is not None else base.threshold,
    )
    signing = {c: signing_key(rng) for c in range(1, roster_size + 1)}
    roster = {c: k.public for c, k in signing.items() if c <= (enrolled or roster_size)}
    clients = {
        c: ClientMachine(
            c, rng=rng.fork(f"client-{c}"), signing_key=signing[c], roster=roster, policy=policy
        )
        for c in members
    }
    levels = {c: uniform_below(rng, config.levels, DIM).astype(np.uint64) for c in members}
    for c, machine in clients.items():
        machine.set_levels(levels[c], weight=1, model_hash=config.model_hash)
    bad = frozenset(members[len(members) - colluders :]) - {VICTIM} if colluders else frozenset()
    everyone = {c: k.public for c, k in signing.items()}  # the server accepts its Sybils too
    return World(config, clients, signing, levels, bad, ServerMachine(config, roster=everyone))


# ---------------------------------------------------------------- the oracle


def oracle(w: World) -> np.ndarray | None:
    """The victim's input rebuilt from the server's view and the colluders' state, or None."""
    config, t = w.config, w.config.threshold
    b_shares: dict[int, bytes] = {}
    s_shares: dict[int, bytes] = {}
    for client, msg in w.sent(UnmaskShares):
        assert isinstance(msg, UnmaskShares)
        for owner, share in msg.self_mask_shares:
            if owner == VICTIM:
                b_shares[client] = share
        for owner, share in msg.key_shares:
            if owner == VICTIM:
                s_shares[client] = share
    for c in w.colluders:  # a colluder hands over both shares it holds
        held = w.clients[c]._held.get(VICTIM)
        if held:
            s_shares[c], b_shares[c] = held
    masked = [m for c, m in w.sent(MaskedInput) if c == VICTIM]
    if len(b_shares) < t or len(s_shares) < t or not masked:
        return None
    session = w.clients[VICTIM].session_id
    try:
        b, s_private = _rebuild(config, b_shares), _rebuild(config, s_shares)
    except Exception:  # shares that do not rebuild: nothing recovered
        return None
    keys = {c: m for c, m in w.sent(AdvertiseKeys) if isinstance(m, AdvertiseKeys)}
    if VICTIM not in keys or x25519_public(s_private) != keys[VICTIM].s_public:
        return None
    payload = masked[0]
    assert isinstance(payload, MaskedInput)
    y = unpack(payload.payload, config.vector_length, config.modulus_bits)
    y = y.astype(word_dtype(config.modulus_bits))
    graph = w.clients[VICTIM].graph
    if graph is None:
        return None
    near = {config.clients[i] for i in graph.holders(config.index_of(VICTIM) - 1)}
    sharers = {c for c, _ in w.sent(ShareKeys)}
    pair = X25519KeyPair(s_private)
    orphaned = [
        (
            VICTIM,
            v,
            pairwise_seed(pair.exchange(keys[v].s_public), session_id=session, u=VICTIM, v=v),
        )
        for v in sorted((near & sharers) - {VICTIM})
    ]
    seeds = [self_mask_seed(b, session_id=session, owner=VICTIM)]
    clear = remove_masks(y, bits=config.modulus_bits, self_seeds=seeds, orphaned_pairs=orphaned)
    return clear[: config.dim].astype(np.uint64)


def _rebuild(config: RoundConfig, shares: dict[int, bytes]) -> bytes:
    t = config.threshold
    holders = sorted(shares)[:t]
    stack = np.stack([shamir.share_from_bytes(shares[h]) for h in holders])[:, None, :]
    return shamir.reconstruct([config.index_of(h) for h in holders], stack, t=t)[0]


def judged(w: World, what: str) -> Outcome:
    got = oracle(w)
    if got is not None and np.array_equal(got, w.levels[VICTIM]):
        return Outcome(True, f"{what}: the oracle stripped the masks and recovered the input")
    return Outcome(False, f"{what}: not recovered; {w.victim_reaction()}")


def refused_at_start(w: World, what: str) -> Outcome | None:
    """None when the victim would join; else the outcome (refused before any key left it).

    Asked of a twin of the victim's machine (same key, roster and policy), so
    the victim itself still starts the round afresh.
    """
    old = w.clients[VICTIM]
    twin = ClientMachine(
        VICTIM,
        rng=DeterministicRandomSource("probe"),
        signing_key=w.signing[VICTIM],
        roster=old._roster,
        policy=old._policy,
    )
    twin.set_levels(w.levels[VICTIM], weight=1, model_hash=w.config.model_hash)
    if any(isinstance(r, AdvertiseKeys) for r in twin.handle(RoundStart(w.config))):
        return None
    return Outcome(False, f"{what}: victim refused: {twin.abort_reason}")


# ---------------------------------------------------------------- the server's choices


def weakest_profile(policy: ClientPolicy) -> Profile:
    """What a malicious server announces: the weakest profile the victim accepts."""
    return "semi-honest" if "semi-honest" in policy.profiles else "active"


def weakest_threshold(policy: ClientPolicy, config: RoundConfig, roster_size: int) -> int:
    """The smallest threshold the victim's policy accepts for ``config`` (else n)."""
    for t in range(2, config.n + 1):
        candidate = dataclasses.replace(config, threshold=t)
        if policy.check(candidate, roster_size=roster_size) is None:
            return t
    return config.n


def weakest(policy: ClientPolicy, roster: int, colluders: int, **kwargs: object) -> World:
    """A round with the weakest profile and threshold the victim accepts."""
    profile = weakest_profile(policy)
    w = build(policy, roster, colluders, profile=profile, **kwargs)  # type: ignore[arg-type]
    t = weakest_threshold(policy, w.config, len(w.clients[VICTIM]._roster))
    return build(policy, roster, colluders, profile=profile, threshold=t, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- attack engines


def split_views(w: World, *, consistency: bool, group_b: set[int]) -> None:
    """Tell ``group_b`` the victim dropped and everyone else it survived; colluders sign both."""
    everyone = w.config.clients
    without = tuple(c for c in everyone if c != VICTIM)
    views = {c: (without if c in group_b else everyone) for c in everyone}
    sigs: dict[tuple[int, ...], list[tuple[int, bytes]]] = {everyone: [], without: []}
    if consistency:
        for c in everyone:
            for reply in w.deliver(c, ConsistencyRequest(views[c])):
                if isinstance(reply, ConsistencySignature):
                    sigs[views[c]].append((c, reply.signature))
        session = w.clients[VICTIM].session_id
        for view in sigs:
            for c in w.colluders:
                if all(s != c for s, _ in sigs[view]):
                    sigs[view].append((c, sign(w.signing[c], *ses.survivors_fields(session, view))))
    for c in everyone:
        if c in w.colluders:
            continue
        w.deliver(c, UnmaskRequest(views[c], tuple(sigs[views[c]])))


def _neighbours(w: World) -> list[int]:
    config = w.config
    graph = w.clients[VICTIM].graph
    assert graph is not None
    return sorted(
        {config.clients[i] for i in graph.holders(config.index_of(VICTIM) - 1)} - {VICTIM}
    )


def split_attack(w: World, what: str) -> Outcome:
    """Run to the masked inputs, then split the victim's honest neighbours between views."""
    if (early := refused_at_start(w, what)) is not None:
        return early
    if not w.to_masked():
        return Outcome(False, f"{what}: {w.victim_reaction()}")
    honest = [c for c in _neighbours(w) if c not in w.colluders]
    # The victim and half its honest neighbours reveal self-mask shares, the rest key shares.
    group_b = set(honest[len(honest) // 2 :])
    split_views(w, consistency=w.config.profile == "active", group_b=group_b)
    return judged(w, what)


def sum_minus_colluders(w: World, what: str) -> Outcome:
    """Tiny cohorts: the honest sum minus what the colluders put in is the victim's input."""
    if (early := refused_at_start(w, what)) is not None:
        return early
    if not w.to_masked():
        return Outcome(False, f"{what}: {w.victim_reaction()}")
    while w.server.result is None and w.server.phase.value not in ("completed", "aborted"):
        w.honest(w.server.advance())
    result = w.server.result
    if result is None:
        return Outcome(False, f"{what}: round did not complete; {w.victim_reaction()}")
    rest = sum((w.levels[c].astype(np.int64) for c in w.colluders), np.zeros(DIM, np.int64))
    got = result.total[:DIM].astype(np.int64) - rest
    if np.array_equal(got, w.levels[VICTIM].astype(np.int64)):
        return Outcome(True, f"{what}: the sum minus the colluders' inputs is the victim's input")
    return Outcome(False, f"{what}: the sum holds other honest inputs")


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Attack:
    id: str
    cls: str
    run: Callable[[ClientPolicy, int, int], Outcome]


def _profile_downgrade(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    w = build(policy, roster, 0, n=min(roster, 10), profile="semi-honest")
    t = weakest_threshold(policy, w.config, roster)
    w = build(policy, roster, 0, n=min(roster, 10), profile="semi-honest", threshold=t)
    return split_attack(w, f"semi-honest round, t = {t}, split survivor views, no colluder")


def _he_downgrade(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    problem = policy.mode_problem("ckks", None)
    if problem:
        return Outcome(False, f"plain CKKS round with a colluding key holder: refused ({problem})")
    return Outcome(
        True,
        "plain CKKS round with a colluding key holder: the victim joins and encrypts under a "
        "secret key the colluder holds, who decrypts its upload",
    )


def _tiny_pair(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    w = build(policy, roster, 1, cohort=(VICTIM, 2), threshold=2)
    return sum_minus_colluders(w, "cohort {victim, one colluder}")


def _tiny_triple(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    w = build(policy, roster, 2, cohort=(VICTIM, 2, 3), threshold=3)
    return sum_minus_colluders(w, "cohort {victim, two colluders}")


def _plus_off_by_one(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    w = build(policy, max(roster, 20), 0, n=20, degree=8, threshold=5)
    what = "SecAgg+ n = 20, k = 8, t = 5 (k holders counted), one colluding neighbour"
    return neighbour_split(w, what)


def _sparse_graph(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    w = build(policy, max(roster, 10), 0, n=10, degree=4, threshold=3)
    what = "SecAgg+ n = 10, k = 4, t = 3 (5% colluders assumed), one colluding neighbour"
    return neighbour_split(w, what)


def neighbour_split(w: World, what: str) -> Outcome:
    """SecAgg+: once the graph is known one neighbour of the victim colludes; views split."""
    if (early := refused_at_start(w, what)) is not None:
        return early
    w.honest(w.server.start())
    while w.clients[VICTIM].graph is None and w.server.phase in (
        ServerPhase.ADVERTISE,
        ServerPhase.GRAPH,
    ):
        w.honest(w.server.advance())
    if w.clients[VICTIM].graph is None:
        return Outcome(False, f"{what}: {w.victim_reaction()}")
    w.colluders = frozenset(_neighbours(w)[:1])
    w.honest(w.server.advance())
    honest = [c for c in _neighbours(w) if c not in w.colluders]
    split_views(w, consistency=True, group_b=set(honest[len(honest) // 2 :]))
    return judged(w, what)


def _graph_grind(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    """SecAgg+: the server grinds a colluder's graph nonce once it has seen every other one."""
    n = max(20, min(roster, 40))
    colluders = max(1, min(n_c, n // 3))
    w = weakest(policy, max(roster, n), colluders, n=n, degree=8)
    what = (
        f"SecAgg+ n = {n}, k = 8, t = {w.config.threshold}: a colluder's revealed nonce "
        "swapped for the best of 2,000 ground to seat colluders beside the victim"
    )
    if (early := refused_at_start(w, what)) is not None:
        return early
    w.honest(w.server.start())
    if w.server.phase is not ServerPhase.ADVERTISE:
        return Outcome(False, f"{what}: {w.victim_reaction()}")
    w.honest(w.server.advance())  # KeyList out, every member's reveal back
    reveals = dict((c, m.nonce) for c, m in w.sent(GraphReveal) if isinstance(m, GraphReveal))
    session = w.clients[VICTIM].session_id
    if VICTIM not in reveals or not session:
        return Outcome(False, f"{what}: {w.victim_reaction()}")
    grinder = max(w.colluders)
    me = w.config.index_of(VICTIM) - 1

    def seated(nonces: dict[int, bytes]) -> int:
        seed = ses.graph_seed(session, nonces.items())
        graph = graph_from_seed(w.config.n, w.config.degree, seed)
        return len({w.config.clients[i] for i in graph.holders(me)} & w.colluders)

    best, most = dict(reveals), -1
    for i in range(2000):
        trial = {**reveals, grinder: hashlib.sha256(b"grind%d" % i).digest()}
        if (count := seated(trial)) > most:
            best, most = trial, count
    for c in w.config.clients:
        w.deliver(c, GraphNonces(tuple(sorted(best.items()))))
    if any(c == VICTIM for c, _ in w.sent(ShareKeys)):
        return Outcome(
            True, f"{what}: the victim shared on the ground graph ({most} colluders beside it)"
        )
    return Outcome(False, f"{what}: {w.victim_reaction()}")


def _split_at_bound(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    n = min(roster, 10)
    w = weakest(policy, roster, min(max(n_c, 1), n - 2), n=n)
    return split_attack(
        w,
        f"{w.config.profile} SecAgg, n = {n}, t = {w.config.threshold}, split views with "
        f"{len(w.colluders)} colluders",
    )


def _differencing(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    ledgers = {c: ContributionLedger() for c in range(1, roster + 1)}
    model = hashlib.sha256(b"one base model").digest()
    first = [
        c
        for c in ledgers
        if ledgers[c].admit(model, b"a" * 32, max_attempts=policy.max_attempts) is None
    ]
    for c in first:
        ledgers[c].contribute(model)
    second = [
        c
        for c in ledgers
        if c != VICTIM
        and ledgers[c].admit(model, b"b" * 32, max_attempts=policy.max_attempts) is None
    ]
    what = "sum over everyone, then everyone but the victim, on the same model"
    if VICTIM in first and len(second) == roster - 1:
        return Outcome(True, f"{what}: both sums formed; their difference is the victim's update")
    return Outcome(
        False, f"{what}: {roster - 1 - len(second)} honest clients refused the second sum"
    )


def _malformed(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    findings = []
    for name, msg in _malformed_messages(policy, roster):
        w = build(policy, roster, 0, n=min(roster, 10))
        w.deliver(VICTIM, RoundStart(w.config))
        try:
            w.deliver(VICTIM, msg)
        except Escaped as exc:
            findings.append(f"{name}: {exc}")
    if findings:
        return Outcome(True, "exceptions escaped the client: " + "; ".join(findings))
    return Outcome(False, "every malformed message aborted the round cleanly")


def _malformed_messages(policy: ClientPolicy, roster: int) -> list[tuple[str, ServerMessage]]:
    junk_key = AdvertiseKeys(2, 0, b"\x00" * 31, b"\x01" * 33, b"")
    return [
        ("key list of None", KeyList(None)),  # type: ignore[arg-type]
        ("short keys", KeyList((junk_key,))),
        ("unmask request before keys", UnmaskRequest((1, 2), ())),
        ("survivors of strings", ConsistencyRequest(("1",))),  # type: ignore[arg-type]
    ]


def _key_substitution(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    w = build(policy, roster, 0, n=min(roster, 10))
    what = "the server swaps a peer's keys for its own in the victim's key list"
    if (early := refused_at_start(w, what)) is not None:
        return early
    outbox = w.server.start()
    for c, msg in outbox:
        for reply in w.deliver(c, msg):
            w.server.receive(c, reply)
    outbox = w.server.advance()
    server_rng = DeterministicRandomSource("server-keys")
    mine_c, mine_s = x25519_keypair(server_rng), x25519_keypair(server_rng)
    for c, msg in outbox:
        if c == VICTIM and isinstance(msg, KeyList):
            msg = KeyList(
                tuple(
                    dataclasses.replace(k, c_public=mine_c.public, s_public=mine_s.public)
                    if k.client == 2
                    else k
                    for k in msg.keys
                )
            )
        w.deliver(c, msg)
    if any(c == VICTIM for c, _ in w.sent(ShareKeys)):
        return Outcome(True, f"{what}: the victim encrypted shares to the server's key")
    return Outcome(False, f"{what}: {w.victim_reaction()}")


def _sybils(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    # The cohort is the victim and ids the consortium never enrolled, all the server's.
    n = max(6, policy.min_cohort)
    cohort = (VICTIM, *range(roster + 1, roster + n))
    w = weakest(policy, roster + n, 0, cohort=cohort, enrolled=roster)
    w.colluders = frozenset(cohort[1:])
    what = "Sybils: every other cohort member is a server identity off the roster"
    if (early := refused_at_start(w, what)) is not None:
        return early
    if not w.to_masked():
        return Outcome(False, f"{what}: {w.victim_reaction()}")
    return judged(w, what)


def _config_split(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    w = build(policy, roster, 0, n=min(roster, 10))
    what = "half the cohort is shown a config with another threshold"
    other = dataclasses.replace(w.config, threshold=w.config.n)
    for c in w.config.clients:
        w.deliver(c, RoundStart(other if c % 2 == 0 else w.config))
    ads = [m for _, m in w.sent(AdvertiseKeys)]
    assert all(isinstance(a, AdvertiseKeys) for a in ads)
    w.deliver(VICTIM, KeyList(tuple(ads)))  # type: ignore[arg-type]
    if any(c == VICTIM for c, _ in w.sent(ShareKeys)):
        return Outcome(True, f"{what}: the victim shared secrets in a split session")
    return Outcome(False, f"{what}: {w.victim_reaction()}")


def _replay(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    old = build(policy, roster, 0, n=min(roster, 10), seed="older-session")
    old.honest(old.server.start())
    stale = [(c, m) for c, m in old.server.advance() if c == VICTIM]
    w = build(policy, roster, 0, n=min(roster, 10))
    what = "the key list of an older session replayed to the victim"
    w.deliver(VICTIM, RoundStart(w.config))
    for _, msg in stale:
        w.deliver(VICTIM, msg)
    if any(c == VICTIM for c, _ in w.sent(ShareKeys)):
        return Outcome(True, f"{what}: the victim shared under the old session's keys")
    return Outcome(False, f"{what}: {w.victim_reaction()}")


def _both_shares(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    w = weakest(policy, roster, 0, n=min(roster, 10))
    what = "each honest holder asked twice: victim alive, then victim dropped"
    if (early := refused_at_start(w, what)) is not None:
        return early
    if not w.to_masked():
        return Outcome(False, f"{what}: {w.victim_reaction()}")
    everyone = w.config.clients
    without = tuple(c for c in everyone if c != VICTIM)
    session = w.clients[VICTIM].session_id
    for view in (everyone, without):
        sigs = tuple(
            (c, sign(w.signing[c], *ses.survivors_fields(session, view))) for c in everyone
        )
        for c in everyone:
            if c != VICTIM:
                w.deliver(c, ConsistencyRequest(view))
                w.deliver(c, UnmaskRequest(view, sigs))
    return judged(w, what)


FACE_CLASS = "8 privacy of the face methods"


def _no_run() -> Outcome:
    raise AssertionError("the FedFace row is run with the client's epsilon")


def _low_order_peer_key(policy: ClientPolicy, roster: int, n_c: int) -> Outcome:
    """A colluder advertises (and signs) low-order X25519 keys; the server relays them.

    A pairwise secret with a low-order point is the same for everyone, so a client
    that agreed to it would mask with, and encrypt shares under, a public value.
    """
    w = build(policy, roster, 1, n=min(roster, 10))
    what = "a colluder's signed low-order keys (0 and 1) relayed in the victim's key list"
    if (early := refused_at_start(w, what)) is not None:
        return early
    for c, msg in w.server.start():
        w.deliver(c, msg)
    ads = [m for _, m in w.sent(AdvertiseKeys) if isinstance(m, AdvertiseKeys)]
    bad = max(w.colluders)
    zero, one = bytes(32), (1).to_bytes(32, "little")  # two low-order points
    forged = []
    for ad in ads:
        if ad.client == bad:
            fields = ses.advertise_fields(w.config, bad, zero, one, ad.graph_commitment)
            ad = dataclasses.replace(
                ad, c_public=zero, s_public=one, signature=sign(w.signing[bad], *fields)
            )
        forged.append(ad)
    w.deliver(VICTIM, KeyList(tuple(forged)))
    if any(c == VICTIM for c, _ in w.sent(ShareKeys)):
        return Outcome(True, f"{what}: the victim agreed a public pairwise secret and shared")
    return Outcome(False, f"{what}: {w.victim_reaction()}")


def _fedface_membership(epsilon: float) -> Outcome:
    """FedFace's broadcast S, every client but the victim colluding: is a face enrolled?"""
    from clients.lab.audit.moment_membership import MembershipSetting, membership_auc

    got = membership_auc(MembershipSetting(epsilon=epsilon, trials=100))
    what = (
        f"membership of a face tested from FedFace's S (30 identities, d = 128, every other "
        f"client colluding, this client's fedface_epsilon = {epsilon:g})"
    )
    verdict = "inferred" if got >= MEMBERSHIP_AUC else "near chance"
    return Outcome(got >= MEMBERSHIP_AUC, f"{what}: AUC {got:.2f}, {verdict} (0.5 is chance)")


#: An AUC at or above this counts as membership inferred (chance is 0.5).
MEMBERSHIP_AUC = 0.75


CATALOGUE: tuple[Attack, ...] = (
    Attack("profile-downgrade", "1 profile downgrade", _profile_downgrade),
    Attack("he-plain-key-holder", "2 HE mode downgrade", _he_downgrade),
    Attack("cohort-of-two", "3 tiny cohort", _tiny_pair),
    Attack("cohort-of-three", "3 tiny cohort", _tiny_triple),
    Attack("secagg-plus-off-by-one", "4 SecAgg+ threshold", _plus_off_by_one),
    Attack("sparse-graph-assumption", "5 graph and colluder assumption", _sparse_graph),
    Attack("graph-grinding", "5 graph and colluder assumption", _graph_grind),
    Attack("differencing", "6 differencing across rounds", _differencing),
    Attack("malformed-messages", "7 server input crashes the client", _malformed),
    Attack("key-substitution", "key substitution", _key_substitution),
    Attack("sybils-off-roster", "Sybils off the roster", _sybils),
    Attack("split-view-at-bound", "split views at the n_C bound", _split_at_bound),
    Attack("config-split", "config split", _config_split),
    Attack("replay-older-session", "replay from an older session", _replay),
    Attack("both-shares-request", "both-shares request", _both_shares),
    Attack("low-order-peer-key", "9 invalid keys", _low_order_peer_key),
    Attack("fedface-moment-membership", FACE_CLASS, lambda *_: _no_run()),
)


def run(
    policy: ClientPolicy, roster_size: int, *, fedface_epsilon: float = 1.0
) -> dict[str, object]:
    """Every attack in the catalogue against clients under ``policy``; a JSON-ready report.

    ``fedface_epsilon`` is the client's S budget ([client.training]), for the FedFace row.
    """
    n_c = policy.assumed_colluders(roster_size) or 0
    rows = []
    for attack in CATALOGUE:
        try:
            if attack.cls == FACE_CLASS:
                outcome = _fedface_membership(fedface_epsilon)
            else:
                outcome = attack.run(policy, roster_size, n_c)
        except Escaped as exc:
            outcome = Outcome(True, f"an exception escaped the client: {exc}")
        rows.append(
            {
                "id": attack.id,
                "class": attack.cls,
                "succeeded": outcome.succeeded,
                "evidence": outcome.evidence,
            }
        )
    return {
        "roster": roster_size,
        "colluders_assumed": n_c,
        "policy": dataclasses.asdict(policy),
        "attacks": rows,
        "succeeded": sum(1 for r in rows if r["succeeded"]),
    }
