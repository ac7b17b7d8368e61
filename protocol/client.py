"""The client side of SecAgg / SecAgg+ as a sans-I/O state machine.

Threat model: the server may be malicious (active profile) or curious
(semi-honest profile); fewer than t clients collude with it. The client
aborts, before releasing anything secret, on every deviation it can see.

Use: ``handle(server_message) -> [client_messages]`` and, once per session,
``set_input(...)``. The machine never sends both unmasking shares of one
peer: each peer has exactly one :class:`PeerState`, and the unmasking reply
is built from that state alone.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from protocol import session as ses
from protocol.config import SECURE_PROFILES, RoundConfig
from protocol.errors import UnexpectedCall
from protocol.graph import NeighbourGraph, graph_from_seed
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShare,
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
from protocol.payload import ClientPayload, RingClientPayload, Seeds
from protocol.policy import ClientPolicy, mode_of
from secagg.errors import DecryptionError, InvalidKey, InvalidShare, InvalidSignature
from secagg.masking import pairwise_seed, self_mask_seed
from secagg.primitives import aead, shamir
from secagg.primitives.kdf import derive_key
from secagg.primitives.signing import SigningKey, sign, verify
from secagg.primitives.x25519 import X25519KeyPair, x25519_keypair
from secagg.quantization import quantize
from secagg.rng import RandomSource


class ClientPhase(enum.Enum):
    """Where the client is in the round."""

    AWAITING_CONFIG = "awaiting-config"
    AWAITING_KEYS = "awaiting-keys"
    AWAITING_GRAPH = "awaiting-graph"
    AWAITING_SHARES = "awaiting-shares"
    AWAITING_INPUT = "awaiting-input"
    AWAITING_CONSISTENCY = "awaiting-consistency"
    AWAITING_UNMASK = "awaiting-unmask"
    UNMASKED = "unmasked"
    COMPLETED = "completed"
    ABORTED = "aborted"


TERMINAL = frozenset({ClientPhase.COMPLETED, ClientPhase.ABORTED})


class PeerState(enum.Enum):
    """One state per peer: which of its two secrets this client may reveal."""

    ADVERTISED = "advertised"  # in U1, no shares held
    SHARED = "shared"  # in U2: this client holds its shares
    ALIVE = "alive"  # in U3: reveal the self-mask share only
    DROPPED = "dropped"  # in U2 \ U3: reveal the mask-key share only


@dataclass(frozen=True, slots=True)
class ClientInput:
    """A client's contribution and the model it came from.

    Either a float ``vector`` (quantised with the round's encoding) or
    integer ``levels`` already on the grid (DP noise, exact tests), and the
    integer FedAvg weight that multiplies it.
    """

    vector: np.ndarray | None
    levels: np.ndarray | None
    weight: int
    model_hash: bytes

    def length(self) -> int:
        """Number of model coordinates."""
        data = self.vector if self.vector is not None else self.levels
        assert data is not None
        return int(data.shape[0]) if data.ndim == 1 else -1


class _Abort(Exception):
    """Internal: a peer fault that ends the round for this client."""


class ClientMachine:
    """One client's view of one round.

    ``policy`` is this client's own (:mod:`protocol.policy`; safe defaults when
    None): a round outside it is refused before any key is generated.
    """

    def __init__(
        self,
        client_id: int,
        *,
        rng: RandomSource,
        signing_key: SigningKey | None = None,
        roster: Mapping[int, bytes] | None = None,
        policy: ClientPolicy | None = None,
        payload: ClientPayload | None = None,
    ) -> None:
        self.client_id = client_id
        #: The variant: how the masked upload is built (plain SecAgg by default).
        self.payload: ClientPayload = payload or RingClientPayload()
        self.phase = ClientPhase.AWAITING_CONFIG
        self.abort_reason: str | None = None
        self._rng = rng
        self._signing_key = signing_key
        self._roster = dict(roster or {})
        self._policy = policy or ClientPolicy()
        self._input: ClientInput | None = None
        self._config: RoundConfig | None = None
        self._graph: NeighbourGraph | None = None
        self._c: X25519KeyPair | None = None
        self._s: X25519KeyPair | None = None
        self._keys: dict[int, AdvertiseKeys] = {}
        self._session = b""
        self._graph_nonce = b""  # SecAgg+: revealed once U1 is fixed
        self._b: bytes | None = None
        self._peers: dict[int, PeerState] = {}
        self._held: dict[int, tuple[bytes, bytes]] = {}  # owner -> (key share, self share)
        self._c_shared: dict[int, bytes] = {}  # peer -> X25519 secret for share encryption
        self._s_shared: dict[int, bytes] = {}  # peer -> X25519 secret for the pairwise mask
        self._signed_survivors: tuple[int, ...] | None = None
        #: Digest of the masked payload once sent (hosts persist it; never re-mask).
        self.masked_digest: bytes | None = None

    # ------------------------------------------------------------------ host API

    @property
    def hybrid(self) -> bool:
        """Whether this machine runs the SecAgg half of the bfv-masked hybrid (for the policy)."""
        return self.payload.hybrid

    @property
    def session_id(self) -> bytes:
        """The session id (empty until the key list arrived)."""
        return self._session

    @property
    def graph(self) -> NeighbourGraph | None:
        """The neighbour graph over cohort positions (None until it is drawn; public)."""
        return self._graph

    def set_input(
        self, vector: np.ndarray, *, weight: int, model_hash: bytes
    ) -> list[ClientMessage]:
        """Fix this session's float input, once. Returns the masked input if it is due now."""
        return self._set(
            ClientInput(np.asarray(vector, dtype=np.float64), None, int(weight), model_hash)
        )

    def set_levels(
        self, levels: np.ndarray, *, weight: int, model_hash: bytes
    ) -> list[ClientMessage]:
        """Fix this session's input as integer levels in [0, Q−1], once."""
        return self._set(ClientInput(None, np.asarray(levels), int(weight), model_hash))

    def _set(self, inp: ClientInput) -> list[ClientMessage]:
        if self._input is not None:
            raise UnexpectedCall("the input is fixed once per session")
        if self.phase in TERMINAL:
            raise UnexpectedCall(f"round already {self.phase.value}")
        self._input = inp
        if self._config is not None:
            self._check_input(self._config)
        if self.phase is ClientPhase.AWAITING_INPUT:
            return self._guarded(self._send_masked_input)
        return []

    def handle(self, msg: ServerMessage) -> list[ClientMessage]:
        """Process one server message; returns the replies (possibly an abort)."""
        if self.phase in TERMINAL:
            return []
        if isinstance(msg, ServerAbort):
            self._finish(ClientPhase.ABORTED, f"server aborted: {msg.reason}")
            return []
        return self._guarded(lambda: self._dispatch(msg))

    def resume(self) -> list[ClientMessage]:
        """Send the masked input now if the payload was the last thing missing (an HE key)."""
        if self.phase is ClientPhase.AWAITING_INPUT and self._input is not None:
            return self._guarded(self._send_masked_input)
        return []

    def abort(self, reason: str) -> list[ClientMessage]:
        """Leave the round (a fault the host saw); drops every secret."""
        if self.phase in TERMINAL:
            return []
        round_ = self._config.round if self._config else 0
        self._finish(ClientPhase.ABORTED, reason)
        return [ClientAbort(self.client_id, round_, reason)]

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, msg: ServerMessage) -> list[ClientMessage]:
        match (self.phase, msg):
            case (ClientPhase.AWAITING_CONFIG, RoundStart()):
                return self._on_round_start(msg)
            case (ClientPhase.AWAITING_KEYS, KeyList()):
                return self._on_key_list(msg)
            case (ClientPhase.AWAITING_GRAPH, GraphNonces()):
                return self._on_graph_nonces(msg)
            case (ClientPhase.AWAITING_SHARES, ShareBundle()):
                return self._on_share_bundle(msg)
            case (ClientPhase.AWAITING_CONSISTENCY, ConsistencyRequest()):
                return self._on_consistency(msg)
            case (ClientPhase.AWAITING_UNMASK, UnmaskRequest()):
                return self._on_unmask(msg)
            case (ClientPhase.UNMASKED, RoundComplete()):
                self._finish(ClientPhase.COMPLETED, None)
                return []
        raise _Abort(f"unexpected {type(msg).__name__} in phase {self.phase.value}")

    def _guarded(self, step: object) -> list[ClientMessage]:
        """Run one step; a fault, or anything a hostile message makes fail, aborts the round.

        Nothing a server sends may escape ``handle``: an error no check
        foresaw (a malformed message whose fields break an invariant deeper
        down) ends the round like any detected deviation, and the secrets go.
        """
        assert callable(step)
        try:
            out: list[ClientMessage] = step()
            return out
        except _Abort as exc:
            reason = str(exc)
        except UnexpectedCall:
            raise  # the host's own misuse (set_input twice): not the server's doing
        except Exception as exc:
            reason = f"malformed server message ({type(exc).__name__}: {exc})"
        round_ = self._config.round if self._config else -1
        self._finish(ClientPhase.ABORTED, reason)
        return [ClientAbort(self.client_id, max(round_, 0), reason)]

    def _finish(self, phase: ClientPhase, reason: str | None) -> None:
        """Enter a terminal phase and drop every session secret (best effort in Python)."""
        self.phase = phase
        self.abort_reason = reason
        self._c = self._s = None
        self._b = None
        self._graph_nonce = b""
        self._held.clear()
        self._c_shared.clear()
        self._s_shared.clear()
        self.payload.clear()

    # ------------------------------------------------------------------ round 0

    def _on_round_start(self, msg: RoundStart) -> list[ClientMessage]:
        config = msg.config
        if config.profile not in SECURE_PROFILES:
            raise _Abort(f"profile {config.profile!r} is not a secure-aggregation round")
        if self.client_id not in config.clients:
            raise _Abort("this client is not in the announced cohort")
        problem = self._policy.check(config, roster_size=len(self._roster), hybrid=self.hybrid)
        if problem:
            raise _Abort(f"refused by this client's policy: {problem}")
        if config.profile == "active" and (self._signing_key is None or not self._roster):
            raise _Abort("active profile needs a signing key and a roster")
        self._config = config
        if self._input is not None:
            try:
                self._check_input(config)
            except UnexpectedCall as exc:  # the input fits another config: not this round
                raise _Abort(str(exc)) from None
        self._c = x25519_keypair(self._rng)
        self._s = x25519_keypair(self._rng)
        commitment = b""
        if mode_of(config) == "secagg+":
            self._graph_nonce = self._rng.random_bytes(ses.GRAPH_NONCE_BYTES)
            commitment = ses.graph_commitment(config, self.client_id, self._graph_nonce)
        signature = b""
        if config.profile == "active":
            assert self._signing_key is not None
            fields = ses.advertise_fields(
                config, self.client_id, self._c.public, self._s.public, commitment
            )
            signature = sign(self._signing_key, *fields)
        self.phase = ClientPhase.AWAITING_KEYS
        return [
            AdvertiseKeys(
                self.client_id,
                config.round,
                self._c.public,
                self._s.public,
                signature,
                commitment,
            )
        ]

    def _check_input(self, config: RoundConfig) -> None:
        assert self._input is not None
        if self._input.model_hash != config.model_hash:
            raise _Abort("model hash differs from the announced config")
        if self._input.length() != config.dim:
            raise UnexpectedCall(f"input must be a vector of length {config.dim}")
        levels = self._input.levels
        if levels is not None and (
            levels.dtype.kind not in "ui"
            or (levels.size and (int(levels.min()) < 0 or int(levels.max()) >= config.levels))
        ):
            raise UnexpectedCall(f"levels must be integers in [0, {config.levels - 1}]")
        if not 0 <= self._input.weight <= config.max_weight:
            raise UnexpectedCall(f"weight must be in [0, {config.max_weight}]")

    # ------------------------------------------------------------------ round 1

    def _neighbours(self) -> frozenset[int]:
        """Client ids whose secrets this client holds and who hold its secrets (self included)."""
        assert self._config is not None and self._graph is not None
        me = self._config.index_of(self.client_id) - 1
        return frozenset(self._config.clients[i] for i in self._graph.holders(me))

    def _on_key_list(self, msg: KeyList) -> list[ClientMessage]:
        config = self._config
        assert config is not None and self._c is not None and self._s is not None
        ids = [k.client for k in msg.keys]
        if len(set(ids)) != len(ids):
            raise _Abort("key list repeats a client")
        if any(c not in config.clients for c in ids):
            raise _Abort("key list names a client outside the cohort")
        if any(k.round != config.round for k in msg.keys):
            raise _Abort("key list holds keys from another round")
        mine = [k for k in msg.keys if k.client == self.client_id]
        own_commitment = (
            ses.graph_commitment(config, self.client_id, self._graph_nonce)
            if self._graph_nonce
            else b""
        )
        if len(mine) != 1 or (mine[0].c_public, mine[0].s_public, mine[0].graph_commitment) != (
            self._c.public,
            self._s.public,
            own_commitment,
        ):
            raise _Abort("key list omits or alters this client's keys")
        publics = [k.c_public for k in msg.keys] + [k.s_public for k in msg.keys]
        if len(set(publics)) != len(publics):
            raise _Abort("key list repeats a public key")
        if len(msg.keys) < config.threshold:
            raise _Abort("too few clients advertised keys")
        sparse = mode_of(config) == "secagg+"
        if sparse and len(msg.keys) != config.n:
            # The graph is drawn from U1's nonces: a server free to leave members out
            # could re-draw it until a colluder sits next to this client.
            raise _Abort("SecAgg+ needs every cohort member's key in U1 (it seeds the graph)")
        want = ses.GRAPH_NONCE_BYTES if sparse else 0
        if any(len(k.graph_commitment) != want for k in msg.keys):
            raise _Abort("a graph commitment is missing or malformed")
        self._keys = {k.client: k for k in msg.keys}
        self._session = ses.session_id(config, msg.keys)
        if config.profile == "active":
            # Every key is checked, neighbour or not: U1 seeds the graph and the session.
            for peer in sorted(self._keys):
                if peer == self.client_id:  # its own keys were compared byte for byte above
                    continue
                k = self._keys[peer]
                public = self._roster.get(peer)
                if public is None:
                    raise _Abort(f"client {peer} is not on the roster")
                fields = ses.advertise_fields(
                    config, peer, k.c_public, k.s_public, k.graph_commitment
                )
                try:
                    verify(public, k.signature, *fields)
                except InvalidSignature:
                    raise _Abort(f"bad key signature from client {peer}") from None
        if sparse:
            # U1 and every commitment are fixed now: reveal, then draw the graph.
            self.phase = ClientPhase.AWAITING_GRAPH
            return [GraphReveal(self.client_id, config.round, self._graph_nonce)]
        self._graph = graph_from_seed(config.n, config.degree, ses.graph_seed(self._session))
        return self._share_secrets()

    def _on_graph_nonces(self, msg: GraphNonces) -> list[ClientMessage]:
        config = self._config
        assert config is not None
        ids = [c for c, _ in msg.nonces]
        if sorted(ids) != sorted(self._keys) or len(set(ids)) != len(ids):
            raise _Abort("graph nonces must come from exactly the members of U1")
        for client, nonce in msg.nonces:
            if len(nonce) != ses.GRAPH_NONCE_BYTES or ses.graph_commitment(
                config, client, nonce
            ) != (self._keys[client].graph_commitment):
                raise _Abort(f"client {client}'s graph nonce does not open its commitment")
        seed = ses.graph_seed(self._session, msg.nonces)
        self._graph = graph_from_seed(config.n, config.degree, seed)
        return self._share_secrets()

    def _share_secrets(self) -> list[ClientMessage]:
        """Shamir-share the mask key and self-mask seed to this client's holders in U1."""
        config = self._config
        assert config is not None and self._c is not None and self._s is not None
        holders = sorted(self._neighbours() & self._keys.keys())
        if len(holders) < config.threshold:
            raise _Abort("too few neighbours advertised keys to share secrets")
        self._peers = {c: PeerState.ADVERTISED for c in holders}
        # Agree with every neighbour now: an invalid key aborts before any share leaves.
        for peer in holders:
            if peer != self.client_id:
                self._c_shared[peer] = self._agree(self._c, peer, self._keys[peer].c_public)
                self._s_shared[peer] = self._agree(self._s, peer, self._keys[peer].s_public)

        self._b = self._rng.random_bytes(32)
        xs = [config.index_of(h) for h in holders]
        shares = shamir.split_at(
            [self._s.private, self._b], xs=xs, t=config.threshold, rng=self._rng
        )
        out: list[EncryptedShare] = []
        for row, holder in enumerate(holders):
            key_share = shamir.shares_to_bytes(shares[row, 0])
            self_share = shamir.shares_to_bytes(shares[row, 1])
            if holder == self.client_id:
                self._held[holder] = (key_share, self_share)
                continue
            key = self._share_key(holder, sender=self.client_id, recipient=holder)
            plaintext = ses.share_plaintext(self.client_id, holder, key_share, self_share)
            aad = ses.share_aad(self._session, self.client_id, holder)
            out.append(
                EncryptedShare(
                    self.client_id, holder, aead.seal(key, plaintext, aad=aad, rng=self._rng)
                )
            )
        commitment = ses.commitment(self._session, self.client_id, self._b)
        signature = b""
        if config.profile == "active":
            assert self._signing_key is not None
            signature = sign(
                self._signing_key, *ses.commitment_fields(self._session, self.client_id, commitment)
            )
        self.phase = ClientPhase.AWAITING_SHARES
        return [ShareKeys(self.client_id, config.round, tuple(out), commitment, signature)]

    def _agree(self, pair: X25519KeyPair | None, peer: int, public: bytes) -> bytes:
        assert pair is not None
        try:
            return pair.exchange(public)
        except InvalidKey:
            raise _Abort(f"client {peer} advertised an invalid key") from None

    def _share_key(self, peer: int, *, sender: int, recipient: int) -> bytes:
        shared = self._c_shared[peer]
        return derive_key(
            shared, label="share-encryption", session_id=self._session, context=(sender, recipient)
        )

    # ------------------------------------------------------------------ round 2

    def _on_share_bundle(self, msg: ShareBundle) -> list[ClientMessage]:
        config = self._config
        assert config is not None
        senders = list(msg.senders)
        if len(set(senders)) != len(senders) or any(s not in self._keys for s in senders):
            raise _Abort("survivor list U2 is malformed")
        if self.client_id not in senders:
            raise _Abort("server omitted this client from U2")
        if len(senders) < config.threshold:
            raise _Abort("too few clients sent shares")
        expected = {s for s in senders if s in self._peers and s != self.client_id}
        got = [s.sender for s in msg.shares]
        if sorted(got) != sorted(expected) or any(
            s.recipient != self.client_id for s in msg.shares
        ):
            raise _Abort("share bundle does not match U2")
        for item in msg.shares:
            key = self._share_key(item.sender, sender=item.sender, recipient=self.client_id)
            aad = ses.share_aad(self._session, item.sender, self.client_id)
            try:
                plain = aead.open_sealed(key, item.ciphertext, aad=aad)
                sender, recipient, key_share, self_share = ses.parse_share_plaintext(plain)
                shamir.share_from_bytes(key_share)
                shamir.share_from_bytes(self_share)
            except (DecryptionError, ValueError, InvalidShare):
                raise _Abort(f"undecryptable shares from client {item.sender}") from None
            if (sender, recipient) != (item.sender, self.client_id):
                raise _Abort(f"shares from client {item.sender} are mislabelled")
            self._held[item.sender] = (key_share, self_share)
        for peer in self._peers:
            if peer in msg.senders:
                self._peers[peer] = PeerState.SHARED
        if len([p for p, s in self._peers.items() if s is PeerState.SHARED]) < config.threshold:
            raise _Abort("too few neighbours sent shares")
        if self._input is None:
            self.phase = ClientPhase.AWAITING_INPUT
            return []
        return self._send_masked_input()

    def _send_masked_input(self) -> list[ClientMessage]:
        if not self.payload.ready():  # the shares are in but the variant waits (an HE key)
            self.phase = ClientPhase.AWAITING_INPUT
            return []
        config, inp = self._config, self._input
        assert (
            config is not None and inp is not None and self._s is not None and self._b is not None
        )
        dtype = self.payload.dtype(config)
        values = np.empty(config.vector_length, dtype=dtype)
        if inp.levels is not None:
            values[: config.dim] = inp.levels
        else:
            assert inp.vector is not None
            values[: config.dim] = quantize(
                inp.vector, config.quantizer, rng=self._rng, dtype=dtype
            )
        if inp.weight != 1:  # no wrap: the config guarantees (Q−1)·w_max below the modulus
            values[: config.dim] *= dtype.type(inp.weight)
        values[config.dim] = inp.weight
        pair_seeds: dict[int, bytes] = {}
        for peer, state in self._peers.items():
            if peer == self.client_id or state is not PeerState.SHARED:
                continue
            shared = self._s_shared[peer]
            pair_seeds[peer] = pairwise_seed(
                shared, session_id=self._session, u=self.client_id, v=peer
            )
        seeds = Seeds(
            me=self.client_id,
            session=self._session,
            self_seed=self_mask_seed(self._b, session_id=self._session, owner=self.client_id),
            pair_seeds=pair_seeds,
        )
        payload = self.payload.seal(
            values, config=config, seeds=seeds, signing_key=self._signing_key
        )
        self.masked_digest = hashlib.sha256(payload).digest()
        self.phase = (
            ClientPhase.AWAITING_CONSISTENCY
            if config.profile == "active"
            else ClientPhase.AWAITING_UNMASK
        )
        return [MaskedInput(self.client_id, config.round, payload)]

    # ------------------------------------------------------------------ rounds 3 and 4

    def _check_survivors(self, survivors: tuple[int, ...]) -> None:
        config = self._config
        assert config is not None
        if len(set(survivors)) != len(survivors):
            raise _Abort("survivor set U3 repeats a client")
        shared = {p for p, s in self._peers.items() if s is PeerState.SHARED}
        if any(s not in self._keys for s in survivors):
            raise _Abort("survivor set U3 names a client outside U1")
        if self.client_id not in survivors:
            raise _Abort("server lists this client as dropped")
        if len(survivors) < config.threshold or len(shared & set(survivors)) < config.threshold:
            raise _Abort("too few survivors to unmask safely")
        if len(survivors) < self._policy.min_survivors(len(self._roster)):
            raise _Abort("too few survivors for k_min honest inputs beside n_C colluders")

    def _on_consistency(self, msg: ConsistencyRequest) -> list[ClientMessage]:
        config = self._config
        assert config is not None and self._signing_key is not None
        self._check_survivors(msg.survivors)
        self._signed_survivors = tuple(sorted(msg.survivors))
        signature = sign(
            self._signing_key, *ses.survivors_fields(self._session, self._signed_survivors)
        )
        self.phase = ClientPhase.AWAITING_UNMASK
        return [ConsistencySignature(self.client_id, config.round, signature)]

    def _on_unmask(self, msg: UnmaskRequest) -> list[ClientMessage]:
        config = self._config
        assert config is not None
        survivors = tuple(sorted(msg.survivors))
        self._check_survivors(msg.survivors)
        if config.profile == "active":
            if survivors != self._signed_survivors:
                raise _Abort("survivor set differs from the one this client signed")
            signers = [c for c, _ in msg.signatures]
            if len(set(signers)) != len(signers) or any(c not in survivors for c in signers):
                raise _Abort("consistency signatures are malformed")
            if len(signers) < config.threshold:
                raise _Abort("too few consistency signatures")
            valid = 0
            for signer, signature in msg.signatures:
                if valid >= config.threshold:
                    break  # t valid signatures over the same U3 are what safety needs
                try:
                    verify(
                        self._roster[signer],
                        signature,
                        *ses.survivors_fields(self._session, survivors),
                    )
                except (InvalidSignature, KeyError):
                    raise _Abort(f"bad consistency signature from client {signer}") from None
                valid += 1
        alive = set(survivors)
        for peer, state in self._peers.items():
            if state is PeerState.SHARED:
                self._peers[peer] = PeerState.ALIVE if peer in alive else PeerState.DROPPED
        self_shares: list[tuple[int, bytes]] = []
        key_shares: list[tuple[int, bytes]] = []
        for peer in sorted(self._peers):
            state = self._peers[peer]
            if state is PeerState.ALIVE:
                self_shares.append((peer, self._held[peer][1]))
            elif state is PeerState.DROPPED:
                key_shares.append((peer, self._held[peer][0]))
        self.phase = ClientPhase.UNMASKED
        return [UnmaskShares(self.client_id, config.round, tuple(self_shares), tuple(key_shares))]
