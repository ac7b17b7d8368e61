"""Homomorphic aggregation as sans-I/O state machines (issue 4, in-memory slice).

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
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from protocol.config import PROTOCOL_VERSION
from protocol.errors import (
    AuthenticationFailed,
    ConflictingMessage,
    InvalidMessage,
    RoundAborted,
    UnexpectedCall,
    UnknownClient,
    WrongPhase,
)
from protocol.messages import EncryptedShare, RoundComplete, ServerAbort
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
from secagg.quantization import Quantizer, check_no_wrap, dequantize_sum, quantize
from secagg.rng import RandomSource

HEScheme = Literal["ckks", "bfv"]
MIN_CONTRIBUTORS = 3  # k_min: an aggregate clients decrypt holds at least this many inputs


@dataclass(frozen=True, slots=True)
class HEConfig:
    """A homomorphic-aggregation round; bound into the session id like RoundConfig."""

    round: int
    clients: tuple[int, ...]
    dim: int
    scheme: HEScheme
    key_holder: int
    clip: float
    max_weight: int
    levels: int  # BFV: quantisation levels of the integer encoding
    nonce: bytes
    model_hash: bytes

    def __post_init__(self) -> None:
        if not self.clients or list(self.clients) != sorted(set(self.clients)):
            raise ParameterError("cohort ids must be strictly increasing")
        if self.key_holder not in self.clients:
            raise ParameterError("the key holder must be in the cohort")
        if self.scheme not in ("ckks", "bfv") or self.dim < 1 or self.max_weight < 1:
            raise ParameterError("invalid scheme, dim or max_weight")
        if len(self.nonce) != 32 or len(self.model_hash) != 32:
            raise ParameterError("nonce and model hash must be 32 bytes")
        n = len(self.clients)
        if isinstance(self.params, he.CkksParams):  # every coordinate of w·x and w is ≤ w_max·clip
            he.check_ckks(self.params, clients=n, max_abs=self.max_weight * max(self.clip, 1.0))
        else:
            Quantizer(self.clip, self.levels)
            worst = max(self.levels - 1, 1) * self.max_weight
            he.check_bfv(self.params, clients=n, max_abs=worst)
            check_no_wrap(n, self.levels, self.max_weight, 62)

    @property
    def params(self) -> he.HEParams:
        """The fixed, validated parameter profile of the scheme."""
        return he.CKKS_8192 if self.scheme == "ckks" else he.BFV_8192

    @property
    def length(self) -> int:
        """Encrypted values per client: the update and its weight."""
        return self.dim + 1

    def canonical(self) -> bytes:
        """Unambiguous encoding, bound into the session id and the join signatures."""
        return encode(
            "he-config",
            PROTOCOL_VERSION,
            self.round,
            encode(*self.clients),
            self.dim,
            self.scheme,
            self.key_holder,
            self.clip.hex(),
            self.max_weight,
            self.levels,
            self.nonce,
            self.model_hash,
        )


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class HEStart:
    """Server → clients: the round."""

    config: HEConfig


@dataclass(frozen=True, slots=True)
class HEJoin:
    """Client → server: a fresh X25519 key for receiving the HE secret key, signed."""

    client: int
    round: int
    public: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class HEKeys:
    """Server → clients: every join."""

    joins: tuple[HEJoin, ...]


@dataclass(frozen=True, slots=True)
class HEKeyDelivery:
    """Key holder → server: the public context, and the secret context sealed per client."""

    client: int
    round: int
    public_context: bytes
    sealed: tuple[EncryptedShare, ...]


@dataclass(frozen=True, slots=True)
class HEKeyBundle:
    """Server → one client: its sealed secret context (empty for the key holder)."""

    sealed: bytes


@dataclass(frozen=True, slots=True)
class HEUpload:
    """Client → server: Enc(w·x ‖ w), signed over the session and the blobs' digest."""

    client: int
    round: int
    blobs: tuple[bytes, ...]
    signature: bytes


@dataclass(frozen=True, slots=True)
class HEResult:
    """Server → contributors: the encrypted sum and who is in it."""

    blobs: tuple[bytes, ...]
    contributors: tuple[int, ...]


HEClientMessage = HEJoin | HEKeyDelivery | HEUpload
HEServerMessage = HEStart | HEKeys | HEKeyBundle | HEResult | RoundComplete | ServerAbort


def join_fields(config: HEConfig, client: int, public: bytes) -> tuple[Field, ...]:
    """What a client signs when it joins."""
    return ("he-join", hashlib.sha256(config.canonical()).digest(), client, public)


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
    """

    def __init__(
        self,
        client_id: int,
        config: HEConfig,
        *,
        rng: RandomSource,
        signing_key: SigningKey,
        roster: Mapping[int, bytes],
    ) -> None:
        self.client_id = client_id
        self.config = config
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
        signature = sign(self._signing, *join_fields(self.config, self.client_id, public))
        return HEJoin(self.client_id, self.config.round, public, signature)

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
        if config.key_holder not in ids or len(ids) < min(len(config.clients), MIN_CONTRIBUTORS):
            raise CeremonyFailed("too few clients joined, or the key holder is missing")
        for j in msg.joins:
            public = self._roster.get(j.client)
            if public is None or len(j.public) != KEY_BYTES:
                raise CeremonyFailed(f"client {j.client} is not on the roster or sent a bad key")
            try:
                verify(public, j.signature, *join_fields(config, j.client, j.public))
            except InvalidSignature:
                raise CeremonyFailed(f"bad join signature from client {j.client}") from None
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
        try:
            verify(
                self._roster[client], msg.signature, *join_fields(self.config, client, msg.public)
            )
        except (InvalidSignature, KeyError):
            raise AuthenticationFailed(f"bad join signature from client {client}") from None
        self.joins[client] = msg

    def close_joins(self, among: Collection[int] | None = None) -> tuple[HEJoin, ...] | None:
        """Fix the join list and the session id; None if too few joined or no key holder.

        ``among`` keeps only those clients' joins (the hybrid mode: SecAgg's U1).
        """
        needed = min(len(self.config.clients), MIN_CONTRIBUTORS)
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

    def set_input(self, vector: np.ndarray, *, weight: int, model_hash: bytes) -> None:
        """Fix the update, once (uploaded when the key arrives)."""
        if self._input is not None:
            raise UnexpectedCall("the input is fixed once per session")
        self._input = (np.asarray(vector, dtype=np.float64), int(weight), model_hash)

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
            self.client_id, config, rng=self._rng, signing_key=self._signing, roster=self._roster
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
            len(config.clients), MIN_CONTRIBUTORS
        ):
            raise _Abort("the aggregate is not over enough contributors, or misses this client")
        try:
            if config.scheme == "ckks":
                total = he.decrypt(ctx, msg.blobs, config.length)
                he.check_aggregate(
                    total, clients=contributors, max_abs=config.max_weight * config.clip
                )
                weights = float(total[-1])
                values = total[:-1]
            else:
                ints = he.decrypt_ints(ctx, msg.blobs, config.length)
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
    """The aggregator's side: relays keys, sums ciphertexts, never holds a secret key."""

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

    def start(self) -> list[tuple[int, HEServerMessage]]:
        """Announce the round."""
        return [(c, HEStart(self.config)) for c in self.config.clients]

    def receive(self, client: int, msg: HEClientMessage) -> None:
        """Accept one message or raise why not; a rejected upload leaves the sum unchanged."""
        if self.phase is HEPhase.ABORTED:
            raise RoundAborted(f"round aborted: {self.abort_reason}")
        if client not in self.config.clients:
            raise UnknownClient(f"client {client} is not in this round's cohort")
        if msg.client != client:
            raise AuthenticationFailed(f"message claims client {msg.client}, sender is {client}")
        if msg.round != self.config.round or client in self.excluded:
            raise WrongPhase("stale round, or a client no longer in the round")
        match (self.phase, msg):
            case (HEPhase.JOIN, HEJoin()):
                self._keys.on_join(client, msg)
            case (HEPhase.KEYS, HEKeyDelivery()) if client == self.config.key_holder:
                self._keys.on_delivery(msg)
                assert self._keys.public is not None
                self._sum = he.CiphertextSum(self._keys.public, length=self.config.length)
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
        if self.phase is HEPhase.JOIN:
            return set(self._keys.joins) == set(self.config.clients)
        if self.phase is HEPhase.KEYS:
            return self._keys.delivery is not None
        if self.phase is HEPhase.UPLOAD:
            return set(self._uploads) == set(self._keys.joins) - set(self.excluded)
        return False

    def advance(self) -> list[tuple[int, HEServerMessage]]:
        """Close the phase (the host decides when: all answered, or a deadline)."""
        if self.phase is HEPhase.JOIN:
            joins = self._keys.close_joins()
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
            needed = min(len(self.config.clients), MIN_CONTRIBUTORS)
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
