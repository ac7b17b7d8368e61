"""Homomorphic aggregation as sans-I/O state machines (issue 4; over gRPC: issue 5).

The aggregator sums ciphertexts and never holds a secret key, so it sees
neither an individual update nor the aggregate; clients decrypt.

Round: HEStart(config) → every client: HEJoin (an X25519 transport key,
signed) → HEKeys (all joins) → the key holder named in the config creates the
TenSEAL context and sends its secret bytes to every other client, sealed with
AES-GCM under an X25519/HKDF key bound to the session id (HEKeyDelivery; the
server only relays) → HEKeyBundle → each client uploads Enc(w·x ‖ w), signed
over the session and the ciphertexts' digest (HEUpload) → the server adds
every valid upload (never deserialising an unchecked blob) → HEResult → each
client decrypts and divides. CKKS encrypts the clipped floats; BFV the
quantised integers, exactly. Keys are per session.

Threat model: a curious or malicious server cannot decrypt (no key) nor
inject keys (signed joins); it can drop or withhold uploads, as in any
aggregation. A client colluding with the server exposes every upload (all
clients share the key); the masked hybrid (:mod:`protocol.he_masked`, BFV
plaintexts with pairwise masks) closes that and reuses the key ceremony
below (:class:`KeyCeremonyClient`, :class:`KeyCeremonyServer`).

The config and messages live in :mod:`protocol.he_messages` (no TenSEAL
import) and are re-exported here. The same machines run in memory
(:func:`run_he_round`) and under the gRPC aggregator and client daemon
(``mode = "ckks"``), where the clients hold the model (:mod:`protocol.he_model`).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from protocol.config import MIN_HONEST
from protocol.errors import (
    AuthenticationFailed,
    ConflictingMessage,
    InvalidMessage,
    RoundAborted,
    UnexpectedCall,
    UnknownClient,
    WrongPhase,
)
from protocol.he_messages import (
    HE_SCHEMES,
    HEClientMessage,
    HEConfig,
    HEInbound,
    HEJoin,
    HEKeyBundle,
    HEKeyDelivery,
    HEKeys,
    HEResult,
    HEScheme,
    HEServerMessage,
    HEStart,
    HEUpload,
)
from protocol.messages import ClientAbort, ClientMessage, EncryptedShare, ServerAbort
from secagg import he
from secagg.encoding import Field, encode
from secagg.errors import (
    DecryptionError,
    InvalidKey,
    InvalidSignature,
    ParameterError,
    SecAggError,
)
from secagg.primitives import aead
from secagg.primitives.kdf import derive_key
from secagg.primitives.signing import SigningKey, sign, verify
from secagg.primitives.x25519 import KEY_BYTES, X25519KeyPair, x25519_keypair
from secagg.quantization import Quantizer, dequantize_sum, quantize
from secagg.rng import RandomSource

__all__ = [  # the config and messages live in protocol.he_messages; re-exported here
    "HE_SCHEMES",
    "CeremonyFailed",
    "HEClientMachine",
    "HEClientMessage",
    "HEConfig",
    "HEJoin",
    "HEKeyBundle",
    "HEKeyDelivery",
    "HEKeys",
    "HEPhase",
    "HEResult",
    "HERoundReport",
    "HEScheme",
    "HEServerMachine",
    "HEServerMessage",
    "HEStart",
    "HEUpload",
    "KeyCeremonyClient",
    "KeyCeremonyServer",
    "he_session_id",
    "join_fields",
    "run_he_round",
    "upload_fields",
]


def join_fields(
    config: HEConfig, client: int, public: bytes, model_sha256: bytes = b""
) -> tuple[Field, ...]:
    """What a client signs when it joins (``model_sha256`` empty where no host binds one)."""
    return ("he-join", hashlib.sha256(config.canonical()).digest(), client, public, model_sha256)


def he_session_id(config: HEConfig, joins: tuple[HEJoin, ...]) -> bytes:
    """Session id over the config and every signed join, in cohort order."""
    ordered = sorted(joins, key=lambda j: j.client)
    fields = [encode(j.client, j.public, j.signature) for j in ordered]
    return hashlib.sha256(encode("he-session", config.canonical(), encode(*fields))).digest()


def upload_fields(session: bytes, client: int, blobs: tuple[bytes, ...]) -> tuple[Field, ...]:
    """What a client signs with its upload: the session and the ciphertexts' digest."""
    digest = hashlib.sha256(encode(*blobs)).digest()
    return ("he-upload", session, client, digest)


def _transport_key(pair: X25519KeyPair, peer: bytes, session: bytes, holder: int, to: int) -> bytes:
    shared = pair.exchange(peer)
    return derive_key(shared, label="he-key-transport", session_id=session, context=(holder, to))


def _aad(session: bytes, holder: int, to: int) -> bytes:
    return encode("he-key-transport", session, holder, to)


# ---------------------------------------------------------------- key ceremony


class CeremonyFailed(SecAggError):
    """A deviation seen during the key ceremony; the client aborts with this reason."""


class KeyCeremonyClient:
    """One client's side of the key ceremony: a signed join, the checked join list, the key.

    The key holder creates the session's context when the join list arrives
    and seals its secret bytes to every other joined client; the others open
    theirs from the bundle. ``context`` holds the secret context once known.
    ``model_sha256`` (the hash of this client's own model) goes into the
    signed join, and a join list whose hashes differ from it is refused: every
    member of a session starts from the same model.
    """

    def __init__(
        self,
        client_id: int,
        config: HEConfig,
        *,
        rng: RandomSource,
        signing_key: SigningKey,
        roster: Mapping[int, bytes],
        model_sha256: bytes = b"",
    ) -> None:
        self.client_id = client_id
        self.config = config
        self.model_sha256 = model_sha256
        self.context: he.HEContext | None = None
        self.session = b""
        self._rng = rng
        self._signing = signing_key
        self._roster = dict(roster)
        self._pair: X25519KeyPair | None = x25519_keypair(rng)
        self._joins: dict[int, HEJoin] = {}

    def join(self) -> HEJoin:
        """The signed join message (a fresh X25519 key for receiving the HE key)."""
        assert self._pair is not None
        public = self._pair.public
        fields = join_fields(self.config, self.client_id, public, self.model_sha256)
        signature = sign(self._signing, *fields)
        return HEJoin(self.client_id, self.config.round, public, signature, self.model_sha256)

    def on_keys(self, msg: HEKeys) -> HEKeyDelivery | None:
        """Check every join; the key holder answers with the sealed key, others with None."""
        config, pair = self.config, self._pair
        if pair is None or self.session:
            raise CeremonyFailed("unexpected join list")
        ids = [j.client for j in msg.joins]
        if len(set(ids)) != len(ids) or any(c not in config.clients for c in ids):
            raise CeremonyFailed("join list is malformed")
        mine = [j for j in msg.joins if j.client == self.client_id]
        if len(mine) != 1 or mine[0].public != pair.public:
            raise CeremonyFailed("join list omits or alters this client's key")
        if config.key_holder not in ids or len(ids) < min(len(config.clients), MIN_HONEST):
            raise CeremonyFailed("too few clients joined, or the key holder is missing")
        for j in msg.joins:
            public = self._roster.get(j.client)
            if public is None or len(j.public) != KEY_BYTES:
                raise CeremonyFailed(f"client {j.client} is not on the roster or sent a bad key")
            try:
                verify(
                    public, j.signature, *join_fields(config, j.client, j.public, j.model_sha256)
                )
            except InvalidSignature:
                raise CeremonyFailed(f"bad join signature from client {j.client}") from None
            if j.model_sha256 != self.model_sha256:
                raise CeremonyFailed(f"client {j.client} joined with a different model")
        self._joins = {j.client: j for j in msg.joins}
        self.session = he_session_id(config, msg.joins)
        if self.client_id != config.key_holder:
            return None
        ctx = he.make_context(config.params)
        secret = he.secret_bytes(ctx)
        sealed = []
        for peer in sorted(self._joins):
            if peer == self.client_id:
                continue
            try:
                key = _transport_key(
                    pair, self._joins[peer].public, self.session, self.client_id, peer
                )
            except InvalidKey:
                raise CeremonyFailed(f"client {peer} joined with an invalid key") from None
            aad = _aad(self.session, self.client_id, peer)
            sealed.append(
                EncryptedShare(self.client_id, peer, aead.seal(key, secret, aad=aad, rng=self._rng))
            )
        self.context = ctx
        self._pair = None  # the transport key has done its job
        return HEKeyDelivery(self.client_id, config.round, he.public_bytes(ctx), tuple(sealed))

    def on_bundle(self, msg: HEKeyBundle) -> None:
        """Open this client's sealed copy of the secret context."""
        config, pair = self.config, self._pair
        if self.client_id == config.key_holder:
            raise CeremonyFailed("the key holder needs no key bundle")
        if pair is None or not self.session or self.context is not None:
            raise CeremonyFailed("unexpected key bundle")
        holder = config.key_holder
        try:
            key = _transport_key(
                pair, self._joins[holder].public, self.session, holder, self.client_id
            )
            secret = aead.open_sealed(
                key, msg.sealed, aad=_aad(self.session, holder, self.client_id)
            )
            self.context = he.load_secret(secret, config.params)
        except (DecryptionError, InvalidKey, ParameterError, he.InvalidCiphertext):
            raise CeremonyFailed("the HE key could not be opened") from None
        self._pair = None

    def clear(self) -> None:
        """Drop the secret key and the transport key (best effort in Python)."""
        self.context = None
        self._pair = None


class KeyCeremonyServer:
    """The aggregator's side of the key ceremony: it checks and relays, and keeps no secret.

    ``public`` is the keyless context the key holder delivered (for summing).
    """

    def __init__(self, config: HEConfig, *, roster: Mapping[int, bytes]) -> None:
        self.config = config
        self.joins: dict[int, HEJoin] = {}
        self.delivery: HEKeyDelivery | None = None
        self.public: he.HEContext | None = None
        self.session = b""
        self._roster = dict(roster)
        self._closed = False

    def on_join(self, client: int, msg: HEJoin) -> None:
        """Accept a signed join (an identical retry is a no-op)."""
        if client in self.joins:
            if self.joins[client] != msg:
                raise ConflictingMessage(f"client {client} joined twice with different keys")
            return
        if self._closed:
            raise WrongPhase("joins are closed")
        if len(msg.model_sha256) not in (0, 32):
            raise InvalidMessage("a join's model hash must be empty or 32 bytes")
        try:
            fields = join_fields(self.config, client, msg.public, msg.model_sha256)
            verify(self._roster[client], msg.signature, *fields)
        except (InvalidSignature, KeyError):
            raise AuthenticationFailed(f"bad join signature from client {client}") from None
        self.joins[client] = msg

    def close_joins(self, among: Collection[int] | None = None) -> tuple[HEJoin, ...] | None:
        """Fix the join list and the session id; None if too few joined or no key holder.

        ``among`` keeps only those clients' joins (the hybrid mode: SecAgg's U1).
        """
        needed = min(len(self.config.clients), MIN_HONEST)
        if among is not None:
            self.joins = {c: j for c, j in self.joins.items() if c in among}
        joins = tuple(self.joins[c] for c in sorted(self.joins))
        if len(joins) < needed or self.config.key_holder not in self.joins:
            return None
        self._closed = True
        self.session = he_session_id(self.config, joins)
        return joins

    def on_delivery(self, msg: HEKeyDelivery) -> None:
        """Check the holder's delivery: one sealed key per joined client, a keyless context."""
        if self.delivery is not None:
            if self.delivery != msg:
                raise ConflictingMessage("a second, different key delivery")
            return
        if not self._closed:
            raise WrongPhase("the join list is not fixed yet")
        want = set(self.joins) - {self.config.key_holder}
        if {s.recipient for s in msg.sealed} != want or len(msg.sealed) != len(want):
            raise InvalidMessage("the key delivery must address every joined client once")
        if any(s.sender != self.config.key_holder for s in msg.sealed):
            raise InvalidMessage("sealed keys must name the key holder as sender")
        try:
            public = he.load_public(msg.public_context, self.config.params)
        except (ParameterError, he.InvalidCiphertext) as exc:
            raise InvalidMessage(f"public context rejected: {exc}") from None
        self.public = public
        self.delivery = msg

    def bundles(self) -> list[tuple[int, HEKeyBundle]]:
        """Each recipient's sealed key, as delivered."""
        if self.delivery is None:
            return []
        return [(s.recipient, HEKeyBundle(s.ciphertext)) for s in self.delivery.sealed]


# ---------------------------------------------------------------- client


class HEPhase(enum.Enum):
    """Where a party is in the HE round."""

    AWAITING_CONFIG = "awaiting-config"
    JOIN = "join"
    KEYS = "keys"
    UPLOAD = "upload"
    RESULT = "result"
    COMPLETED = "completed"
    ABORTED = "aborted"


class _Abort(Exception):
    pass


class HEClientMachine:
    """One client's view of an HE round; ``result`` holds Σw·x / Σw when completed."""

    def __init__(
        self,
        client_id: int,
        *,
        rng: RandomSource,
        signing_key: SigningKey | None,
        roster: Mapping[int, bytes],
    ) -> None:
        self.client_id = client_id
        self.phase = HEPhase.AWAITING_CONFIG
        self.abort_reason: str | None = None
        self.result: np.ndarray | None = None
        self.weight_sum: float | None = None
        self._rng = rng
        self._signing = signing_key
        self._roster = dict(roster)
        self._config: HEConfig | None = None
        self._keys: KeyCeremonyClient | None = None
        self._input: tuple[np.ndarray, int, bytes] | None = None
        self._model_sha256 = b""

    def set_input(
        self, vector: np.ndarray, *, weight: int, model_hash: bytes, model_sha256: bytes = b""
    ) -> None:
        """Fix the update, once (uploaded when the key arrives).

        ``model_hash`` must equal the config's; ``model_sha256``, if given, is
        the hash of this client's own model, signed into its join and compared
        with every other member's (see :class:`KeyCeremonyClient`).
        """
        if self._input is not None:
            raise UnexpectedCall("the input is fixed once per session")
        self._input = (np.asarray(vector, dtype=np.float64), int(weight), model_hash)
        self._model_sha256 = model_sha256

    def handle(self, msg: HEServerMessage) -> list[HEClientMessage]:
        """One server message in, replies out (an abort ends the round silently here)."""
        if self.phase in (HEPhase.COMPLETED, HEPhase.ABORTED):
            return []
        if isinstance(msg, ServerAbort):
            self._end(HEPhase.ABORTED, f"server aborted: {msg.reason}")
            return []
        try:
            match (self.phase, msg):
                case (HEPhase.AWAITING_CONFIG, HEStart()):
                    return self._on_start(msg.config)
                case (HEPhase.JOIN, HEKeys()):
                    return self._on_keys(msg)
                case (HEPhase.KEYS, HEKeyBundle()):
                    return self._on_bundle(msg)
                case (HEPhase.RESULT, HEResult()):
                    self._on_result(msg)
                    return []
            raise _Abort(f"unexpected {type(msg).__name__} in phase {self.phase.value}")
        except (_Abort, CeremonyFailed) as exc:
            self._end(HEPhase.ABORTED, str(exc))
            return []

    def _end(self, phase: HEPhase, reason: str | None) -> None:
        self.phase, self.abort_reason = phase, reason
        if self._keys is not None:
            self._keys.clear()  # the secret key goes with the session (best effort in Python)

    def _on_start(self, config: HEConfig) -> list[HEClientMessage]:
        if self.client_id not in config.clients:
            raise _Abort("this client is not in the announced cohort")
        if self._input is None or self._input[2] != config.model_hash:
            raise _Abort("model hash differs from the announced config (or no input set)")
        if self._input[0].shape != (config.dim,) or not 0 <= self._input[1] <= config.max_weight:
            raise _Abort("the input does not fit the announced config")
        if self._signing is None:
            raise _Abort("HE rounds need a signing key and a roster")
        self._config = config
        self._keys = KeyCeremonyClient(
            self.client_id,
            config,
            rng=self._rng,
            signing_key=self._signing,
            roster=self._roster,
            model_sha256=self._model_sha256,
        )
        self.phase = HEPhase.JOIN
        return [self._keys.join()]

    def _on_keys(self, msg: HEKeys) -> list[HEClientMessage]:
        assert self._keys is not None
        delivery = self._keys.on_keys(msg)
        self.phase = HEPhase.KEYS
        if delivery is None:
            return []
        return [delivery, *self._upload()]

    def _on_bundle(self, msg: HEKeyBundle) -> list[HEClientMessage]:
        assert self._keys is not None
        self._keys.on_bundle(msg)
        return self._upload()

    def _upload(self) -> list[HEClientMessage]:
        config, inp = self._config, self._input
        ctx = self._keys.context if self._keys is not None else None
        assert (
            config is not None and ctx is not None and inp is not None and self._signing is not None
        )
        assert self._keys is not None
        vector, weight, _ = inp
        clipped = np.clip(vector, -config.clip, config.clip)
        if config.scheme == "ckks":
            blobs = he.encrypt(ctx, np.append(weight * clipped, float(weight)))
        else:
            levels = quantize(clipped, Quantizer(config.clip, config.levels), rng=self._rng)
            values = np.append(levels.astype(np.int64) * weight, weight)
            blobs = he.encrypt_ints(ctx, values)
        signed = tuple(blobs)
        signature = sign(self._signing, *upload_fields(self._keys.session, self.client_id, signed))
        self.phase = HEPhase.RESULT
        return [HEUpload(self.client_id, config.round, signed, signature)]

    def _on_result(self, msg: HEResult) -> None:
        config = self._config
        ctx = self._keys.context if self._keys is not None else None
        assert config is not None and ctx is not None
        contributors = len(msg.contributors)
        if self.client_id not in msg.contributors or contributors < min(
            len(config.clients), MIN_HONEST
        ):
            raise _Abort("the aggregate is not over enough contributors, or misses this client")
        try:
            if config.scheme == "ckks":
                total = he.decrypt(ctx, msg.blobs, config.vector_length)
                he.check_aggregate(
                    total, clients=contributors, max_abs=config.max_weight * config.clip
                )
                weights = float(total[-1])
                values = total[:-1]
            else:
                ints = he.decrypt_ints(ctx, msg.blobs, config.vector_length)
                he.check_aggregate(
                    ints.astype(np.float64),
                    clients=contributors,
                    max_abs=float(config.max_weight * max(config.levels - 1, 1)),
                )
                weights = float(ints[-1])
                values = dequantize_sum(
                    ints[:-1], Quantizer(config.clip, config.levels), weight_sum=round(weights)
                )
        except (he.InvalidCiphertext, ParameterError) as exc:
            raise _Abort(f"the aggregate does not decrypt to a plausible sum: {exc}") from None
        if weights <= 0:
            raise _Abort("the aggregate carries no weight")
        self.weight_sum = weights
        self.result = values / weights
        self._end(HEPhase.COMPLETED, None)


# ---------------------------------------------------------------- server


class HEServerMachine:
    """The aggregator's side: relays keys, sums ciphertexts, never holds a secret key.

    Its host interface is ServerMachine's (``receive``, ``ready_to_advance``,
    ``advance``, ``abort``, ``exclude``, ``waiting_for``, ``accepted_count``),
    so the gRPC coordinator drives both alike and replays either from its log.
    """

    def __init__(self, config: HEConfig, *, roster: Mapping[int, bytes]) -> None:
        self.config = config
        self.phase = HEPhase.JOIN
        self.abort_reason: str | None = None
        self.excluded: dict[int, str] = {}
        self._roster = dict(roster)
        self._keys = KeyCeremonyServer(config, roster=roster)
        self._uploads: dict[int, bytes] = {}  # client -> digest
        self._sum: he.CiphertextSum | None = None
        self.result_blobs: tuple[bytes, ...] | None = None

    @property
    def contributors(self) -> tuple[int, ...]:
        """Clients whose upload is in the sum."""
        return tuple(sorted(self._uploads))

    @property
    def survivors(self) -> tuple[int, ...]:
        """The contributors (the host's name for them)."""
        return self.contributors

    @property
    def recipients(self) -> tuple[int, ...]:
        """Who the encrypted sum goes to: the contributors (as in the hybrid's machine)."""
        return self.contributors

    @property
    def aborted(self) -> bool:
        """True once the round is aborted."""
        return self.phase is HEPhase.ABORTED

    def start(self) -> list[tuple[int, HEServerMessage]]:
        """Announce the round."""
        return [(c, HEStart(self.config)) for c in self.config.clients]

    def accepted_count(self) -> int:
        """Messages accepted so far (an identical retry does not count)."""
        return len(self._keys.joins) + (self._keys.delivery is not None) + len(self._uploads)

    def waiting_for(self) -> set[int]:
        """Clients whose answer the current phase still expects."""
        if self.phase is HEPhase.JOIN:
            return set(self.config.clients) - set(self._keys.joins) - set(self.excluded)
        if self.phase is HEPhase.KEYS:
            holder = self.config.key_holder
            done = self._keys.delivery is not None or holder in self.excluded
            return set() if done else {holder}
        if self.phase is HEPhase.UPLOAD:
            return set(self._keys.joins) - set(self._uploads) - set(self.excluded)
        return set()

    def exclude(self, client: int, reason: str) -> None:
        """Host decision (or the replay of one): the client takes no further part."""
        self.excluded[client] = reason

    def abort(self, reason: str) -> list[tuple[int, HEServerMessage]]:
        """Host decision (e.g. a restart after the deadline)."""
        if self.phase in (HEPhase.COMPLETED, HEPhase.ABORTED):
            raise WrongPhase(f"round already {self.phase.value}")
        return self._abort(reason)

    def receive(self, client: int, msg: HEInbound | ClientMessage) -> None:
        """Accept one message or raise why not; a rejected upload leaves the sum unchanged.

        A ClientAbort excludes its sender (it is logged as an exclusion, not
        counted as accepted); SecAgg's other messages have no place here.
        """
        if self.phase is HEPhase.ABORTED:
            raise RoundAborted(f"round aborted: {self.abort_reason}")
        if client not in self.config.clients:
            raise UnknownClient(f"client {client} is not in this round's cohort")
        if msg.client != client:
            raise AuthenticationFailed(f"message claims client {msg.client}, sender is {client}")
        if msg.round != self.config.round or client in self.excluded:
            raise WrongPhase("stale round, or a client no longer in the round")
        if isinstance(msg, ClientAbort):
            if self.phase is HEPhase.COMPLETED:
                raise WrongPhase("the round is already completed")
            self.excluded[client] = f"client aborted: {msg.reason[:200]}"
            return
        match (self.phase, msg):
            case (HEPhase.JOIN, HEJoin()):
                self._keys.on_join(client, msg)
            case (HEPhase.KEYS, HEKeyDelivery()) if client == self.config.key_holder:
                self._keys.on_delivery(msg)
                assert self._keys.public is not None
                self._sum = he.CiphertextSum(self._keys.public, length=self.config.vector_length)
            case (HEPhase.KEYS, HEUpload()) if client == self.config.key_holder:
                self._on_upload(client, msg)  # the holder uploads with its delivery
            case (HEPhase.UPLOAD, HEUpload()):
                self._on_upload(client, msg)
            case _:
                raise WrongPhase(
                    f"{type(msg).__name__} is not accepted in phase {self.phase.value}"
                )

    def _on_upload(self, client: int, msg: HEUpload) -> None:
        digest = hashlib.sha256(encode(*msg.blobs)).digest()
        if client in self._uploads:
            if self._uploads[client] != digest:
                self.excluded[client] = "sent a conflicting second upload"
                raise ConflictingMessage(f"client {client} already uploaded something else")
            return
        if client not in self._keys.joins or self._sum is None:
            raise WrongPhase("no key has been delivered for this client yet")
        try:
            verify(
                self._roster[client],
                msg.signature,
                *upload_fields(self._keys.session, client, msg.blobs),
            )
        except (InvalidSignature, KeyError):
            raise AuthenticationFailed(f"bad upload signature from client {client}") from None
        try:
            self._sum.add(msg.blobs)
        except he.InvalidCiphertext as exc:
            self.excluded[client] = f"invalid ciphertext: {exc}"
            raise InvalidMessage(f"invalid ciphertext from client {client}: {exc}") from None
        self._uploads[client] = digest

    def ready_to_advance(self) -> bool:
        """Everyone expected answered."""
        if self.phase in (HEPhase.JOIN, HEPhase.KEYS, HEPhase.UPLOAD):
            return not self.waiting_for()
        return False

    def advance(self) -> list[tuple[int, HEServerMessage]]:
        """Close the phase (the host decides when: all answered, or a deadline)."""
        if self.phase is HEPhase.JOIN:
            joins = self._keys.close_joins(among=set(self.config.clients) - set(self.excluded))
            if joins is None:
                return self._abort("too few clients joined, or the key holder is missing")
            self.phase = HEPhase.KEYS
            return [(j.client, HEKeys(joins)) for j in joins]
        if self.phase is HEPhase.KEYS:
            if self._keys.delivery is None:
                return self._abort("the key holder did not deliver the key")
            self.phase = HEPhase.UPLOAD
            return list(self._keys.bundles())
        if self.phase is HEPhase.UPLOAD:
            needed = min(len(self.config.clients), MIN_HONEST)
            if len(self._uploads) < needed or self._sum is None:
                return self._abort(f"only {len(self._uploads)} uploads, need {needed}")
            self.result_blobs = tuple(self._sum.result())
            self.phase = HEPhase.COMPLETED
            contributors = self.contributors
            return [(c, HEResult(self.result_blobs, contributors)) for c in contributors]
        raise WrongPhase(f"cannot advance from {self.phase.value}")

    def _abort(self, reason: str) -> list[tuple[int, HEServerMessage]]:
        self.phase = HEPhase.ABORTED
        self.abort_reason = reason
        return [(c, ServerAbort(reason)) for c in self.config.clients if c not in self.excluded]


# ---------------------------------------------------------------- in-memory round


@dataclass
class HERoundReport:
    """What an in-memory HE round did."""

    completed: bool
    abort_reason: str | None
    contributors: tuple[int, ...]
    dropped: dict[str, list[int]]
    results: dict[int, np.ndarray]  # each surviving client's decrypted weighted mean
    upload_bytes: int


def run_he_round(
    config: HEConfig,
    *,
    vectors: Mapping[int, np.ndarray],
    weights: Mapping[int, int],
    roster_keys: Mapping[int, SigningKey],
    rng: RandomSource,
    drops: Mapping[str, list[int]] | None = None,
) -> HERoundReport:
    """Run one HE round over an in-memory transport; ``drops`` maps "join"/"upload" to clients."""
    drops = {k: list(v) for k, v in (drops or {}).items()}
    if config.key_holder in drops.get("join", []) + drops.get("upload", []):
        raise ParameterError("the key holder cannot drop in this simulation")
    roster = {c: k.public for c, k in roster_keys.items()}
    server = HEServerMachine(config, roster=roster)
    clients = {
        c: HEClientMachine(c, rng=rng, signing_key=roster_keys[c], roster=roster)
        for c in config.clients
    }
    for c, machine in clients.items():
        machine.set_input(vectors[c], weight=weights[c], model_hash=config.model_hash)
    gone = set(drops.get("join", []))
    upload_bytes = 0
    outbox = server.start()
    for _phase in range(4):
        for cid, msg in outbox:
            if cid in gone:
                continue
            if isinstance(msg, HEKeyBundle) and cid in drops.get("upload", []):
                gone.add(cid)  # silent from the upload on
                continue
            for reply in clients[cid].handle(msg):
                if isinstance(reply, HEUpload):
                    upload_bytes = max(upload_bytes, sum(len(b) for b in reply.blobs))
                server.receive(cid, reply)
        if server.phase in (HEPhase.COMPLETED, HEPhase.ABORTED):
            break
        outbox = server.advance()
        if server.phase in (HEPhase.COMPLETED, HEPhase.ABORTED):
            for cid, msg in outbox:
                if cid not in gone:
                    clients[cid].handle(msg)
            break
    results = {c: m.result for c, m in clients.items() if m.result is not None}
    return HERoundReport(
        completed=server.phase is HEPhase.COMPLETED,
        abort_reason=server.abort_reason,
        contributors=server.contributors,
        dropped={k: sorted(v) for k, v in drops.items()},
        results=results,
        upload_bytes=upload_bytes,
    )
