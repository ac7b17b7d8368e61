"""The server side of SecAgg / SecAgg+ as a sans-I/O state machine.

The host feeds client messages to :meth:`ServerMachine.receive` (which
raises a :class:`ProtocolError` subclass for anything it rejects, and never
changes accepted state when it does), asks :meth:`ready_to_advance`, and
calls :meth:`advance` when everyone answered or the phase deadline passed:
the host owns the clock. Clients that did not answer by then are dropouts.
Below t survivors the round aborts and every remaining client is told.

Masked inputs are summed as they arrive, so memory is one accumulator, not
one vector per client. :meth:`ServerMachine.receive_masked` also takes the
payload from a :class:`PayloadSource` and sums it slice by slice, so a host
that spools uploads to disk never holds a whole vector in memory.

What an upload is, how it is summed and how the masks come off is the
variant's (:mod:`protocol.payload`): plain SecAgg's mod-2^k ring unless the
constructor is given another payload (the hybrid HE mode's).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from protocol import session as ses
from protocol.config import SECURE_PROFILES, RoundConfig
from protocol.errors import (
    AuthenticationFailed,
    ConflictingMessage,
    InvalidMessage,
    ProtocolError,
    RoundAborted,
    UnknownClient,
    WrongPhase,
)
from protocol.graph import NeighbourGraph, graph_from_seed
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
    RoundComplete,
    RoundStart,
    ServerAbort,
    ServerMessage,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskShares,
)
from protocol.payload import AggregateResult as AggregateResult  # re-exported
from protocol.payload import InMemory, RingServerPayload, ServerPayload
from protocol.payload import PayloadSource as PayloadSource  # re-exported
from secagg.errors import InvalidKey, InvalidShare, InvalidSignature, ParameterError
from secagg.masking import pairwise_seed, self_mask_seed
from secagg.primitives import shamir
from secagg.primitives.signing import verify
from secagg.primitives.x25519 import KEY_BYTES, X25519KeyPair, check_public, x25519_public

Outgoing = list[tuple[int, ServerMessage]]


class ServerPhase(enum.Enum):
    """Which client message the server is collecting."""

    ADVERTISE = "advertise"
    GRAPH = "graph"  # SecAgg+ only: every U1 member reveals its graph nonce
    SHARE = "share"
    MASKED = "masked"
    CONSISTENCY = "consistency"
    UNMASK = "unmask"
    COMPLETED = "completed"
    ABORTED = "aborted"


_EXPECTED: dict[ServerPhase, type] = {
    ServerPhase.ADVERTISE: AdvertiseKeys,
    ServerPhase.GRAPH: GraphReveal,
    ServerPhase.SHARE: ShareKeys,
    ServerPhase.MASKED: MaskedInput,
    ServerPhase.CONSISTENCY: ConsistencySignature,
    ServerPhase.UNMASK: UnmaskShares,
}


@dataclass
class _Phase:
    """Messages accepted in one phase, by client."""

    accepted: dict[int, ClientMessage] = field(default_factory=dict)
    digests: dict[int, bytes] = field(default_factory=dict)


class ServerMachine:
    """The aggregator's view of one round."""

    def __init__(
        self,
        config: RoundConfig,
        *,
        roster: Mapping[int, bytes] | None = None,
        payload: ServerPayload | None = None,
    ) -> None:
        if config.profile not in SECURE_PROFILES:
            raise ParameterError(f"ServerMachine runs {SECURE_PROFILES}, not {config.profile!r}")
        if config.profile == "active" and not roster:
            raise ParameterError("the active profile needs a roster of signing keys")
        self.config = config
        self.phase = ServerPhase.ADVERTISE
        self.abort_reason: str | None = None
        self.result: AggregateResult | None = None
        #: Clients excluded from the rest of the round, with the reason (audit log).
        self.excluded: dict[int, str] = {}
        #: Bad unmasking shares (audit log). A share off the owner's polynomial,
        #: shown by ≥ t + 1 consistent other shares, proves only that its holder
        #: altered it *or* that the owner dealt it so: ``disputes`` names the pair
        #: (holder, owner), never one of them. With fewer spares the holder is
        #: only a suspect.
        self.disputes: dict[tuple[int, int], str] = {}
        self.suspects: dict[int, str] = {}
        self._roster = dict(roster or {})
        self._graph: NeighbourGraph | None = None  # fixed by the session id, after round 0
        self._phases: dict[ServerPhase, _Phase] = {p: _Phase() for p in _EXPECTED}
        self._expected: set[int] = set(config.clients)
        self._session = b""
        self._u1: dict[int, AdvertiseKeys] = {}
        self._u2: dict[int, ShareKeys] = {}
        self._u3: tuple[int, ...] = ()
        #: The variant: what an upload is, how it is summed and unmasked (plain SecAgg by default).
        self.payload: ServerPayload = payload or RingServerPayload(config)

    # ------------------------------------------------------------------ host API

    @property
    def session_id(self) -> bytes:
        """The session id (empty until the key list was sent)."""
        return self._session

    @property
    def graph(self) -> NeighbourGraph | None:
        """The neighbour graph over cohort positions (None until it is drawn)."""
        return self._graph

    @property
    def aborted(self) -> bool:
        """True once the round is aborted."""
        return self.phase is ServerPhase.ABORTED

    @property
    def survivors(self) -> tuple[int, ...]:
        """U3: clients whose masked input is in the sum (after the masked phase)."""
        return self._u3

    def start(self) -> Outgoing:
        """Announce the round to the cohort."""
        return [(c, RoundStart(self.config)) for c in self.config.clients]

    def waiting_for(self) -> set[int]:
        """Clients expected to answer in this phase who have not yet."""
        if self.phase not in _EXPECTED:
            return set()
        answered = self._phases[self.phase].accepted.keys()
        return {c for c in self._expected if c not in answered and c not in self.excluded}

    def ready_to_advance(self) -> bool:
        """True once every expected client answered (the host may advance earlier at a deadline)."""
        return self.phase in _EXPECTED and not self.waiting_for()

    def receive(self, client: int, msg: ClientMessage) -> None:
        """Accept one message from authenticated ``client``, or raise why not."""
        payload = InMemory(msg.payload) if isinstance(msg, MaskedInput) else None
        self._receive(client, msg, payload)

    def receive_masked(self, client: int, round_: int, payload: PayloadSource) -> None:
        """:meth:`receive` for a masked input whose payload is read in slices.

        Same checks, same outcome, same idempotency (an identical retry through
        either method is a no-op), but memory stays at a few MiB per call.
        """
        if not self.payload.streams:
            raise InvalidMessage("this round's uploads are read whole; send them whole")
        self._receive(client, _header(client, round_), payload)

    def _receive(self, client: int, msg: ClientMessage, payload: PayloadSource | None) -> None:
        if self.phase is ServerPhase.ABORTED:
            raise RoundAborted(f"round {self.config.round} was aborted: {self.abort_reason}")
        if self._earlier_repeat(client, msg, payload):
            return  # its ack was lost (e.g. a restart) after it closed its phase: a no-op
        if self.phase is ServerPhase.COMPLETED:
            raise WrongPhase(f"round {self.config.round} is completed")
        check_sender(self.config, self.excluded, client, msg)
        if isinstance(msg, ClientAbort):
            self.excluded[client] = f"client aborted: {msg.reason[:200]}"
            return
        expected = _EXPECTED[self.phase]
        if not isinstance(msg, expected):
            raise WrongPhase(f"{type(msg).__name__} is not accepted in phase {self.phase.value}")
        if client not in self._expected:
            raise WrongPhase(f"client {client} did not take part in the previous phase")
        record = self._phases[self.phase]
        digest = _masked_digest(payload.sha256) if payload is not None else _digest(msg)
        if client in record.digests:
            if record.digests[client] == digest:
                return  # an identical retry: already accepted, nothing changes
            self.excluded[client] = "sent a conflicting second message"
            raise ConflictingMessage(
                f"client {client} already sent a different {expected.__name__}"
            )
        try:
            if payload is not None:
                self._add_masked(client, payload)
            else:
                self._validate_and_apply(client, msg)
        except ProtocolError as exc:
            self.excluded[client] = str(exc)
            raise
        record.accepted[client] = _stored(msg)
        record.digests[client] = digest

    def _earlier_repeat(
        self, client: int, msg: ClientMessage, payload: PayloadSource | None
    ) -> bool:
        """Whether ``msg`` is byte-identical to one this client had accepted in a closed phase.

        The last message of a phase closes it; if its acknowledgement is lost,
        the client's identical retry arrives in the next phase. Only an exact
        repeat qualifies: anything else is still refused as late or conflicting.
        """
        for phase, kind in _EXPECTED.items():
            if phase is self.phase or not isinstance(msg, kind):
                continue
            stored = self._phases[phase].digests.get(client)
            if stored is None:
                return False
            digest = _masked_digest(payload.sha256) if payload is not None else _digest(msg)
            return stored == digest
        return False

    def advance(self) -> Outgoing:
        """Close the current phase: non-responders drop out; returns the next requests."""
        if self.phase not in _EXPECTED:
            raise WrongPhase(f"cannot advance from {self.phase.value}")
        answered = sorted(c for c in self._phases[self.phase].accepted if c not in self.excluded)
        if self.phase is ServerPhase.MASKED:
            # A client excluded after its masked input was summed stays in U3: its input
            # cannot be taken out, and its masks are removed with the others' shares.
            answered = sorted(self._phases[self.phase].accepted)
        if len(answered) < self.config.threshold:
            return self._abort(
                f"only {len(answered)} clients answered in phase {self.phase.value}, "
                f"threshold is {self.config.threshold}"
            )
        step = {
            ServerPhase.ADVERTISE: self._after_advertise,
            ServerPhase.GRAPH: self._after_graph,
            ServerPhase.SHARE: self._after_share,
            ServerPhase.MASKED: self._after_masked,
            ServerPhase.CONSISTENCY: self._after_consistency,
            ServerPhase.UNMASK: self._after_unmask,
        }[self.phase]
        return step(answered)

    # ------------------------------------------------------------------ validation

    def _holders(self, client: int) -> frozenset[int]:
        assert self._graph is not None
        i = self.config.index_of(client) - 1
        return frozenset(self.config.clients[j] for j in self._graph.holders(i))

    def _verify(self, client: int, signature: bytes, *fields: bytes | str | int) -> None:
        if self.config.profile != "active":
            if signature:
                raise InvalidMessage("signatures are not used in the semi-honest profile")
            return
        try:
            verify(self._roster[client], signature, *fields)
        except (InvalidSignature, KeyError):
            raise AuthenticationFailed(f"bad signature from client {client}") from None

    def _validate_and_apply(self, client: int, msg: ClientMessage) -> None:
        match msg:
            case AdvertiseKeys():
                if len(msg.c_public) != KEY_BYTES or len(msg.s_public) != KEY_BYTES:
                    raise InvalidMessage("public keys must be 32 bytes")
                try:
                    check_public(msg.c_public)
                    check_public(msg.s_public)
                except InvalidKey:
                    raise InvalidMessage("advertised an invalid or low-order X25519 key") from None
                width = ses.GRAPH_NONCE_BYTES if self._sparse else 0
                if len(msg.graph_commitment) != width:
                    raise InvalidMessage(f"graph commitment must be {width} bytes in this round")
                self._verify(
                    client,
                    msg.signature,
                    *ses.advertise_fields(
                        self.config, client, msg.c_public, msg.s_public, msg.graph_commitment
                    ),
                )
            case GraphReveal():
                if len(msg.nonce) != ses.GRAPH_NONCE_BYTES:
                    raise InvalidMessage(f"graph nonce must be {ses.GRAPH_NONCE_BYTES} bytes")
                if ses.graph_commitment(self.config, client, msg.nonce) != (
                    self._u1[client].graph_commitment
                ):
                    raise InvalidMessage("graph nonce does not open the client's commitment")
            case ShareKeys():
                want = (self._holders(client) & self._u1.keys()) - {client}
                got = [s.recipient for s in msg.shares]
                if len(set(got)) != len(got) or set(got) != want:
                    raise InvalidMessage("shares must go to exactly the client's neighbours in U1")
                if any(s.sender != client for s in msg.shares):
                    raise InvalidMessage("shares must name their sender")
                if any(len(s.ciphertext) != ses.SHARE_CIPHERTEXT_BYTES for s in msg.shares):
                    raise InvalidMessage(
                        f"share ciphertexts must be {ses.SHARE_CIPHERTEXT_BYTES} bytes"
                    )
                if len(msg.self_mask_commitment) != 32:
                    raise InvalidMessage("commitment must be 32 bytes")
                self._verify(
                    client,
                    msg.signature,
                    *ses.commitment_fields(self._session, client, msg.self_mask_commitment),
                )
            case MaskedInput():
                self._add_masked(client, InMemory(msg.payload))
            case ConsistencySignature():
                self._verify(client, msg.signature, *ses.survivors_fields(self._session, self._u3))
            case UnmaskShares():
                self._check_unmask_shares(client, msg)

    def _add_masked(self, client: int, payload: PayloadSource) -> None:
        """Check one upload and add it to the sum (the payload's rules; all or nothing)."""
        self.payload.add(
            client,
            payload,
            session=self._session,
            verify=lambda signature, *fields: self._verify(client, signature, *fields),
        )

    def _check_unmask_shares(self, client: int, msg: UnmaskShares) -> None:
        alive = set(self._u3)
        held = {owner for owner in self._u2 if client in self._holders(owner)}
        want_self = {o for o in held if o in alive}
        want_keys = held - alive
        self_owners = [o for o, _ in msg.self_mask_shares]
        key_owners = [o for o, _ in msg.key_shares]
        if len(set(self_owners)) != len(self_owners) or set(self_owners) != want_self:
            raise InvalidMessage("self-mask shares must cover exactly the surviving peers")
        if len(set(key_owners)) != len(key_owners) or set(key_owners) != want_keys:
            raise InvalidMessage("key shares must cover exactly the dropped peers")
        try:
            for _, share in msg.self_mask_shares + msg.key_shares:
                shamir.share_from_bytes(share)
        except InvalidShare as exc:
            raise InvalidMessage(f"malformed share: {exc}") from None

    # ------------------------------------------------------------------ transitions

    def abort(self, reason: str) -> Outgoing:
        """Abort the round (the host's decision, e.g. a restart past the deadline)."""
        if self.phase in (ServerPhase.COMPLETED, ServerPhase.ABORTED):
            raise WrongPhase(f"round already {self.phase.value}")
        return self._abort(reason)

    def exclude(self, client: int, reason: str) -> None:
        """Exclude ``client`` from the rest of the round (host decision, or replay of one)."""
        self.excluded[client] = reason

    def accepted_count(self) -> int:
        """Messages accepted so far in all phases (identical retries do not count)."""
        return sum(len(p.accepted) for p in self._phases.values())

    def _abort(self, reason: str) -> Outgoing:
        self.phase = ServerPhase.ABORTED
        self.abort_reason = reason
        notify = sorted(c for c in self._expected if c not in self.excluded)
        return [(c, ServerAbort(reason)) for c in notify]

    @property
    def _sparse(self) -> bool:
        """SecAgg+ (a degree below n − 1): the graph is drawn by commit-reveal."""
        degree = self.config.degree
        return degree is not None and degree < self.config.n - 1

    def _after_advertise(self, answered: list[int]) -> Outgoing:
        accepted = self._phases[ServerPhase.ADVERTISE].accepted
        self._u1 = {c: accepted[c] for c in answered}  # type: ignore[misc]
        keys = tuple(self._u1[c] for c in answered)
        self._session = ses.session_id(self.config, keys)
        self._expected = set(answered)
        if self._sparse:
            if len(answered) != self.config.n:
                # Clients refuse a partial U1 in SecAgg+: it would let a server re-draw.
                return self._abort(
                    f"SecAgg+ needs every cohort member's keys; {len(answered)} of "
                    f"{self.config.n} advertised"
                )
            self.phase = ServerPhase.GRAPH
        else:
            self._graph = graph_from_seed(
                self.config.n, self.config.degree, ses.graph_seed(self._session)
            )
            self.phase = ServerPhase.SHARE
        return [(c, KeyList(keys)) for c in answered]

    def _after_graph(self, answered: list[int]) -> Outgoing:
        if sorted(answered) != sorted(self._u1):
            # A missing nonce cannot be skipped: choosing whose nonces count is a re-draw.
            missing = sorted(set(self._u1) - set(answered))
            return self._abort(f"graph nonces missing from {missing}; the graph cannot be drawn")
        accepted = self._phases[ServerPhase.GRAPH].accepted
        nonces = tuple((c, accepted[c].nonce) for c in answered)  # type: ignore[union-attr]
        self._graph = graph_from_seed(
            self.config.n, self.config.degree, ses.graph_seed(self._session, nonces)
        )
        self.phase = ServerPhase.SHARE
        return [(c, GraphNonces(nonces)) for c in answered]

    def _after_share(self, answered: list[int]) -> Outgoing:
        accepted = self._phases[ServerPhase.SHARE].accepted
        self._u2 = {c: accepted[c] for c in answered}  # type: ignore[misc]
        out: Outgoing = []
        for v in answered:
            shares = tuple(s for u in answered for s in self._u2[u].shares if s.recipient == v)
            out.append((v, ShareBundle(tuple(answered), shares)))
        self._expected = set(answered)
        self.phase = ServerPhase.MASKED
        return out

    def _after_masked(self, answered: list[int]) -> Outgoing:
        self._u3 = tuple(answered)
        self._expected = {c for c in answered if c not in self.excluded}
        if self.config.profile == "active":
            self.phase = ServerPhase.CONSISTENCY
            return [(c, ConsistencyRequest(self._u3)) for c in sorted(self._expected)]
        self.phase = ServerPhase.UNMASK
        return [(c, UnmaskRequest(self._u3, ())) for c in sorted(self._expected)]

    def _after_consistency(self, answered: list[int]) -> Outgoing:
        accepted = self._phases[ServerPhase.CONSISTENCY].accepted
        signatures = tuple((c, accepted[c].signature) for c in answered)  # type: ignore[union-attr]
        self._expected = set(answered)
        self.phase = ServerPhase.UNMASK
        return [(c, UnmaskRequest(self._u3, signatures)) for c in answered]

    def _after_unmask(self, answered: list[int]) -> Outgoing:
        try:
            self_seeds, orphaned = self._recovered_seeds(answered)
            self.result = self.payload.unmask(
                survivors=self._u3, self_seeds=self_seeds, orphaned_pairs=orphaned
            )
        except (InvalidShare, InvalidKey) as exc:
            return self._abort(f"unmasking failed: {exc}")
        self.phase = ServerPhase.COMPLETED
        return [(c, RoundComplete()) for c in answered]

    # ------------------------------------------------------------------ unmasking

    def _collect(
        self, answered: list[int], *, self_masks: bool
    ) -> dict[int, list[tuple[int, bytes]]]:
        """owner -> [(holder x, share)] in holder order."""
        accepted = self._phases[ServerPhase.UNMASK].accepted
        out: dict[int, list[tuple[int, bytes]]] = {}
        for holder in answered:
            msg = accepted[holder]
            assert isinstance(msg, UnmaskShares)
            for owner, share in msg.self_mask_shares if self_masks else msg.key_shares:
                out.setdefault(owner, []).append((self.config.index_of(holder), share))
        return out

    def _reconstruct(
        self,
        shares: dict[int, list[tuple[int, bytes]]],
        owners: list[int],
        check: Callable[[int, bytes], bool],
    ) -> dict[int, bytes]:
        """Rebuild each owner's secret; one Lagrange row per distinct holder set.

        Each secret must pass ``check`` (its commitment or public key). One that
        does not is rebuilt again leaving out one share at a time, which finds a
        single bad share when spare shares exist; it is recorded in
        :attr:`disputes`. Raises :class:`InvalidShare` when that fails too.
        """
        t = self.config.threshold
        groups: dict[tuple[int, ...], list[int]] = {}
        for owner in owners:
            got = shares.get(owner, [])
            if len(got) < t:
                raise InvalidShare(f"only {len(got)} shares for client {owner}, need {t}")
            groups.setdefault(tuple(x for x, _ in got[:t]), []).append(owner)
        secrets: dict[int, bytes] = {}
        for xs, members in groups.items():
            coefficients = shamir.lagrange_at_zero(xs)
            stacked = np.stack(
                [np.stack([shamir.share_from_bytes(s) for _, s in shares[o][:t]]) for o in members],
                axis=1,
            )  # (t, m, 16)
            rebuilt: list[bytes | None]
            try:
                rebuilt = list(shamir.reconstruct_with(coefficients, stacked))
            except InvalidShare:  # a rebuilt limb is not 16-bit: find the owner, then recover
                rebuilt = [
                    _rebuild_one(coefficients, stacked[:, i : i + 1]) for i in range(len(members))
                ]
            for owner, secret in zip(members, rebuilt, strict=True):
                secrets[owner] = (
                    secret
                    if secret is not None and check(owner, secret)
                    else self._recover(owner, shares[owner], check)
                )
        return secrets

    def _recover(
        self, owner: int, got: list[tuple[int, bytes]], check: Callable[[int, bytes], bool]
    ) -> bytes:
        """Leave one share out at a time until the rest rebuild the committed secret.

        The secret is used whenever it passes ``check``. Its left-out holder is
        only *named* when the other shares, at least t + 1 of them, all lie on
        one polynomial: with fewer, two cancelling bad shares could frame an
        honest holder, and the data cannot tell the cases apart.
        """
        t = self.config.threshold
        for skip in range(len(got)):
            rest = got[:skip] + got[skip + 1 :]
            if len(rest) < t:
                break
            xs = [x for x, _ in rest]
            stack = np.stack([shamir.share_from_bytes(s) for _, s in rest])[:, None, :]
            try:
                secret = shamir.reconstruct_with(shamir.lagrange_at_zero(xs[:t]), stack[:t])[0]
            except InvalidShare:
                continue
            if not check(owner, secret):
                continue
            culprit = self.config.clients[got[skip][0] - 1]
            note = f"sent a bad share of client {owner}'s secret"
            try:
                if len(rest) == t:
                    raise InvalidShare("no spare share to confirm with")
                shamir.reconstruct(xs, stack, t=t, verify_extra=True)
            except InvalidShare:
                self.suspects[culprit] = note  # usable secret, unconfirmed blame
            else:
                self.disputes[(culprit, owner)] = (
                    f"client {culprit}'s share of client {owner}'s secret is off the "
                    f"polynomial of the other shares (altered by {culprit} or dealt so by {owner})"
                )
            return secret
        raise InvalidShare(f"shares of client {owner} do not rebuild its committed secret")

    def _recovered_seeds(
        self, answered: list[int]
    ) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
        """Survivors' self-mask seeds, and (survivor, dropped, seed) for every orphaned pair.

        Every rebuilt secret is checked against its commitment or public key
        (see :meth:`_reconstruct`); the payload expands them (mod 2^k, or mod
        the BFV plain modulus in the hybrid).
        """
        alive = list(self._u3)
        dropped = sorted(set(self._u2) - set(alive))

        def seed_ok(owner: int, seed: bytes) -> bool:
            commitment = ses.commitment(self._session, owner, seed)
            return commitment == self._u2[owner].self_mask_commitment

        def key_ok(owner: int, key: bytes) -> bool:
            return x25519_public(key) == self._u1[owner].s_public

        b = self._reconstruct(self._collect(answered, self_masks=True), alive, seed_ok)
        s_sk = self._reconstruct(self._collect(answered, self_masks=False), dropped, key_ok)
        orphaned = []
        for d in dropped:
            pair = X25519KeyPair(s_sk[d])
            for u in sorted(self._holders(d) & set(alive) - {d}):
                shared = pair.exchange(self._u1[u].s_public)
                orphaned.append((u, d, pairwise_seed(shared, session_id=self._session, u=u, v=d)))
        self_seeds = [self_mask_seed(b[u], session_id=self._session, owner=u) for u in alive]
        return self_seeds, orphaned


def _rebuild_one(coefficients: np.ndarray, stacked: np.ndarray) -> bytes | None:
    """One secret from its (t, 1, 16) shares, or None if a rebuilt limb is out of range."""
    try:
        return shamir.reconstruct_with(coefficients, stacked)[0]
    except InvalidShare:
        return None


def check_sender(
    config: RoundConfig, excluded: Mapping[int, str], client: int, msg: ClientMessage
) -> None:
    """What every server machine checks before it looks at a message's content."""
    if client not in config.clients:
        raise UnknownClient(f"client {client} is not in this round's cohort")
    if msg.client != client:
        raise AuthenticationFailed(f"message claims client {msg.client}, sender is {client}")
    if msg.round != config.round:
        raise WrongPhase(f"message for round {msg.round}, current round is {config.round}")
    if client in excluded:
        raise WrongPhase(f"client {client} is no longer in the round ({excluded[client]})")


def _digest(msg: ClientMessage) -> bytes:
    """Identity of a message for idempotency: its full content."""
    if isinstance(msg, MaskedInput):
        return _masked_digest(hashlib.sha256(msg.payload).digest())
    return hashlib.sha256(repr(msg).encode()).digest()


def _masked_digest(payload_sha256: bytes) -> bytes:
    """Identity of a masked input, from its payload's SHA-256 (streamed or not)."""
    return hashlib.sha256(b"masked" + payload_sha256).digest()


def _header(client: int, round_: int) -> MaskedInput:
    """A masked input without its bytes: the payload travels (or was summed) separately."""
    return MaskedInput(client, round_, b"")


def _stored(msg: ClientMessage) -> ClientMessage:
    """What the server keeps: masked payloads are already summed, so only their header."""
    if isinstance(msg, MaskedInput):
        return _header(msg.client, msg.round)
    return msg
