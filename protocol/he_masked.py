"""The hybrid HE mode (bfv-masked): SecAgg's masks inside BFV plaintexts.

Why: in plain HE mode every client holds the session key, so an aggregator
colluding with any one client decrypts every upload. Here each client adds
SecAgg's masks (its self mask and one pairwise mask per peer, expanded modulo
the BFV plain modulus t by :mod:`secagg.masking`) to its quantised update
before encrypting it. A colluding key holder that decrypts one upload sees a
uniformly masked vector; pairwise masks cancel only in the sum, and the
self masks (and the masks of dropped clients) come off only after Shamir
recovery. The aggregator still never holds the key, so it never sees even
the aggregate.

Round (one start message; the key ceremony of :mod:`protocol.he_flow` runs
beside SecAgg's first two rounds):

1. HEMaskedStart(config) → every client: HEJoin and AdvertiseKeys.
2. HEKeys + KeyList → the key holder: HEKeyDelivery (the session's BFV secret
   context sealed to every joined client, a keyless public context for the
   server); everyone: ShareKeys (Shamir shares of the mask key and self-mask
   seed).
3. HEKeyBundle + ShareBundle → MaskedInput whose payload is
   Enc(w·q(x) ‖ w + masks mod t), signed (:func:`upload_payload`). The server
   checks every ciphertext and adds it to the encrypted sum.
4. ConsistencyRequest, UnmaskRequest → as in SecAgg (active profile).
5. The server rebuilds the survivors' self-mask seeds and the dropped
   clients' mask keys, expands them mod t into a correction vector and adds it
   to the encrypted sum as a plaintext (a public operation) → HEResult to the
   clients that unmasked; each decrypts Σ w·q(x) ‖ Σ w exactly, checks the
   range and divides.

The SecAgg parts are :class:`protocol.client.ClientMachine` and
:class:`protocol.server.ServerMachine` themselves, run with this mode's
payload (:class:`BfvClientPayload`, :class:`BfvServerPayload`, see
:mod:`protocol.payload`) where the masked vector is built, summed and
unmasked; every check, the never-both-shares rule and the dropout recovery
are the same code. The config
is refused unless the n-client sum fits t (``he.check_bfv``: no wrap, noise
budget to spare). Profile: active, complete graph (the key holder seals the
key only to clients whose signed keys it verified).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from protocol.client import TERMINAL, ClientMachine, ClientPhase
from protocol.config import RoundConfig
from protocol.errors import (
    AuthenticationFailed,
    InvalidMessage,
    ProtocolError,
    RoundAborted,
    UnexpectedCall,
    UnknownClient,
    WrongPhase,
)
from protocol.he_flow import (
    CeremonyFailed,
    HEJoin,
    HEKeyBundle,
    HEKeyDelivery,
    HEKeys,
    HEResult,
    KeyCeremonyClient,
    KeyCeremonyServer,
)
from protocol.he_messages import HEMaskedConfig as HEMaskedConfig  # re-exported
from protocol.he_messages import HEMaskedStart as HEMaskedStart  # re-exported
from protocol.messages import (
    ClientMessage,
    MaskedInput,
    RoundComplete,
    RoundStart,
    ServerMessage,
    UnmaskRequest,
)
from protocol.payload import PayloadSource, Seeds, Verifier
from protocol.policy import ClientPolicy, lab_policy
from protocol.server import ServerMachine, ServerPhase
from secagg import he
from secagg.encoding import Field, encode
from secagg.errors import ParameterError
from secagg.masking import mask_input, remove_masks
from secagg.primitives.signing import SigningKey, sign
from secagg.quantization import dequantize_sum
from secagg.rng import RandomSource

# ---------------------------------------------------------------- messages


#: Client → server: the ceremony's messages and SecAgg's (MaskedInput carries ciphertexts).
HEMaskedClientMessage = HEJoin | HEKeyDelivery | ClientMessage
#: Server → client: the start, the ceremony's relays, SecAgg's requests and the result.
HEMaskedServerMessage = HEMaskedStart | HEKeys | HEKeyBundle | HEResult | ServerMessage

_LENGTH = struct.Struct(">Q")


def upload_fields(session: bytes, client: int, blobs: Sequence[bytes]) -> tuple[Field, ...]:
    """What a client signs with its masked upload: the SecAgg session and the blobs' digest."""
    return ("he-masked-upload", session, client, hashlib.sha256(encode(*blobs)).digest())


def upload_payload(blobs: Sequence[bytes], signature: bytes) -> bytes:
    """MaskedInput.payload: every ciphertext, then the signature, each length-prefixed."""
    return b"".join(_LENGTH.pack(len(item)) + item for item in (*blobs, signature))


def parse_upload(payload: bytes, count: int) -> tuple[tuple[bytes, ...], bytes]:
    """Inverse of :func:`upload_payload`; exactly ``count`` blobs and a signature, or refused."""
    items: list[bytes] = []
    view = memoryview(payload)
    offset = 0
    while offset < len(view):
        if len(items) > count:
            raise InvalidMessage("masked upload has trailing data")
        if offset + _LENGTH.size > len(view):
            raise InvalidMessage("masked upload is truncated")
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if size > len(view) - offset:
            raise InvalidMessage("masked upload is truncated")
        items.append(bytes(view[offset : offset + size]))
        offset += size
    if len(items) != count + 1:
        raise InvalidMessage(f"masked upload holds {len(items) - 1} ciphertexts, expected {count}")
    return tuple(items[:-1]), items[-1]


# ---------------------------------------------------------------- client


class BfvClientPayload:
    """The hybrid's client half: masks mod t, the masked vector sent as signed BFV ciphertexts.

    ``context`` is the session's BFV secret context, set once the key
    ceremony delivered it; until then the masked input waits.
    """

    hybrid = True  # the policy sees mode bfv-masked

    def __init__(self, params: he.BfvParams) -> None:
        self.params = params
        self.context: he.HEContext | None = None

    def dtype(self, config: RoundConfig) -> np.dtype[np.unsignedinteger]:
        return np.dtype(np.uint64)  # (Q−1)·w_max < t/2: checked by the config

    def ready(self) -> bool:
        return self.context is not None

    def seal(
        self,
        values: np.ndarray,
        *,
        config: RoundConfig,
        seeds: Seeds,
        signing_key: SigningKey | None,
    ) -> bytes:
        assert self.context is not None and signing_key is not None
        masked = mask_input(
            values,
            modulus=self.params.plain_modulus,
            me=seeds.me,
            self_seed=seeds.self_seed,
            pair_seeds=seeds.pair_seeds,
        )
        blobs = he.encrypt_residues(self.context, masked)
        signature = sign(signing_key, *upload_fields(seeds.session, seeds.me, blobs))
        return upload_payload(blobs, signature)

    def clear(self) -> None:
        self.context = None


class HEMaskedClientMachine:
    """One client's view of a hybrid round; ``result`` holds Σw·x / Σw when completed.

    ``total`` and ``weight_sum`` are the exact decrypted Σ w·q(x) and Σ w.
    """

    def __init__(
        self,
        client_id: int,
        *,
        rng: RandomSource,
        signing_key: SigningKey,
        roster: Mapping[int, bytes],
        policy: ClientPolicy | None = None,
    ) -> None:
        self.client_id = client_id
        self.result: np.ndarray | None = None
        self.total: np.ndarray | None = None
        self.weight_sum: int | None = None
        self._rng = rng
        self._signing = signing_key
        self._roster = dict(roster)
        self._payload = BfvClientPayload(he.BFV_8192)
        self._core = ClientMachine(
            client_id,
            rng=rng,
            signing_key=signing_key,
            roster=roster,
            policy=policy,
            payload=self._payload,
        )
        self._config: HEMaskedConfig | None = None
        self._keys: KeyCeremonyClient | None = None
        self._survivors: tuple[int, ...] | None = None

    @property
    def phase(self) -> ClientPhase:
        """SecAgg's phase (COMPLETED only once the result is decrypted)."""
        return self._core.phase

    @property
    def abort_reason(self) -> str | None:
        """Why this client left the round, if it did."""
        return self._core.abort_reason

    def set_input(
        self, vector: np.ndarray, *, weight: int, model_hash: bytes
    ) -> list[HEMaskedClientMessage]:
        """Fix this session's float input, once (quantised by the round's encoding)."""
        return [*self._core.set_input(vector, weight=weight, model_hash=model_hash)]

    def set_levels(
        self, levels: np.ndarray, *, weight: int, model_hash: bytes
    ) -> list[HEMaskedClientMessage]:
        """Fix this session's input as integer levels in [0, Q−1], once."""
        return [*self._core.set_levels(levels, weight=weight, model_hash=model_hash)]

    def handle(self, msg: HEMaskedServerMessage) -> list[HEMaskedClientMessage]:
        """One server message in, replies out (an abort is a ClientAbort reply)."""
        if self._core.phase in TERMINAL:
            return []
        try:
            match msg:
                case HEMaskedStart():
                    return self._on_start(msg.config)
                case HEKeys():
                    return self._on_keys(msg)
                case HEKeyBundle():
                    return self._on_bundle(msg)
                case HEResult():
                    return self._on_result(msg)
                case RoundStart() | RoundComplete():
                    # A plain SecAgg start or end would skip the encryption or the result.
                    return self._abort(f"{type(msg).__name__} has no place in a hybrid round")
                case UnmaskRequest():
                    out = self._core.handle(msg)
                    if self._core.phase is ClientPhase.UNMASKED:
                        self._survivors = tuple(sorted(msg.survivors))
                    return [*out]
            out = self._core.handle(msg)
        except CeremonyFailed as exc:
            return self._abort(str(exc))
        except UnexpectedCall:
            raise  # the host's own misuse, not the server's doing
        except Exception as exc:
            return self._abort(f"malformed server message ({type(exc).__name__}: {exc})")
        if self._core.phase in TERMINAL and self._keys is not None:
            self._keys.clear()
        return [*out]

    def abort(self, reason: str) -> list[HEMaskedClientMessage]:
        """Leave the round (the host saw a fault, e.g. a message that did not decode)."""
        return self._abort(reason)

    def _abort(self, reason: str) -> list[HEMaskedClientMessage]:
        if self._keys is not None:
            self._keys.clear()
        return [*self._core.abort(reason)]

    def _on_start(self, config: HEMaskedConfig) -> list[HEMaskedClientMessage]:
        if self._config is not None:
            return self._abort("a second start message")
        self._config = config
        out = self._core.handle(RoundStart(config.secagg()))  # cohort, policy, input checks
        if self._core.phase is ClientPhase.ABORTED:
            return [*out]
        self._keys = KeyCeremonyClient(
            self.client_id,
            config.keys(),
            rng=self._rng,
            signing_key=self._signing,
            roster=self._roster,
        )
        return [self._keys.join(), *out]

    def _on_keys(self, msg: HEKeys) -> list[HEMaskedClientMessage]:
        if self._keys is None:
            return self._abort("join list before the round started")
        delivery = self._keys.on_keys(msg)
        if delivery is None:
            return []
        self._payload.context = self._keys.context  # the key holder has it now
        return [delivery, *self._core.resume()]

    def _on_bundle(self, msg: HEKeyBundle) -> list[HEMaskedClientMessage]:
        if self._keys is None:
            return self._abort("key bundle before the round started")
        self._keys.on_bundle(msg)
        self._payload.context = self._keys.context
        return [*self._core.resume()]

    def _on_result(self, msg: HEResult) -> list[HEMaskedClientMessage]:
        config, survivors = self._config, self._survivors
        ctx = self._keys.context if self._keys is not None else None
        if config is None or ctx is None or survivors is None:
            return self._abort("a result before this client unmasked")
        if tuple(sorted(msg.contributors)) != survivors:
            return self._abort("the result is not over the survivor set this client unmasked")
        try:
            ints = he.decrypt_ints(ctx, msg.blobs, config.vector_length)
        except (he.InvalidCiphertext, ParameterError) as exc:
            return self._abort(f"the aggregate does not decrypt: {exc}")
        weight_sum = int(ints[config.dim])
        values = ints[: config.dim]
        if not 0 < weight_sum <= len(survivors) * config.max_weight:
            return self._abort(f"implausible weight sum {weight_sum}: masks did not cancel")
        if values.size and (
            int(values.min()) < 0 or int(values.max()) > (config.levels - 1) * weight_sum
        ):
            return self._abort("aggregate out of range: a ciphertext was corrupt or foreign")
        self.total = values.astype(np.uint64)
        self.weight_sum = weight_sum
        quantizer = config.secagg().quantizer
        self.result = dequantize_sum(values, quantizer, weight_sum=weight_sum) / weight_sum
        self._core.handle(RoundComplete())  # completes and drops the session secrets
        if self._keys is not None:
            self._keys.clear()
        return []


# ---------------------------------------------------------------- server


class BfvServerPayload:
    """The hybrid's server half: an encrypted sum, the masks removed under encryption."""

    streams = False  # an upload is a few ciphertexts, checked whole

    def __init__(self, config: RoundConfig, params: he.BfvParams) -> None:
        self.config = config
        self.params = params
        #: The unmasked encrypted sum, once completed.
        self.result_blobs: tuple[bytes, ...] | None = None
        self._chunks = he.chunk_count(params, config.vector_length)
        self._encrypted: he.CiphertextSum | None = None

    def attach(self, public: he.HEContext) -> None:
        """The keyless context the uploads are summed with (from the key delivery)."""
        self._encrypted = he.CiphertextSum(public, length=self.config.vector_length)

    def add(self, client: int, payload: PayloadSource, *, session: bytes, verify: Verifier) -> None:
        if self._encrypted is None:
            raise WrongPhase("no HE key was delivered for this round")
        blobs, signature = parse_upload(payload.read(0, payload.length), self._chunks)
        verify(signature, *upload_fields(session, client, blobs))
        try:
            self._encrypted.add(blobs)  # checks every blob first; a refusal leaves the sum as is
        except he.InvalidCiphertext as exc:
            raise InvalidMessage(f"invalid ciphertext: {exc}") from None

    def unmask(
        self,
        *,
        survivors: tuple[int, ...],
        self_seeds: Sequence[bytes],
        orphaned_pairs: Sequence[tuple[int, int, bytes]],
    ) -> None:
        """Add the mask correction as a plaintext: the sum stays encrypted, with no masks."""
        assert self._encrypted is not None
        # The masks taken off a zero vector: the correction c, Σ y + c ≡ Σ w·q(x) ‖ Σ w (mod t).
        correction = remove_masks(
            np.zeros(self.config.vector_length, dtype=np.uint64),
            modulus=self.params.plain_modulus,
            self_seeds=self_seeds,
            orphaned_pairs=orphaned_pairs,
        )
        self._encrypted.add_residues(correction)
        self.result_blobs = tuple(self._encrypted.result())


class HEMaskedServerMachine:
    """The aggregator's side of a hybrid round; it never holds a key or an unmasked value.

    Its host interface is ServerMachine's (``receive``, ``ready_to_advance``,
    ``advance``, ``abort``, ``exclude``, ``waiting_for``, ``accepted_count``),
    so the gRPC coordinator drives, logs and replays it like the others.
    """

    def __init__(self, config: HEMaskedConfig, *, roster: Mapping[int, bytes]) -> None:
        self.config = config
        self._keys = KeyCeremonyServer(config.keys(), roster=roster)
        self._payload = BfvServerPayload(config.secagg(), config.params)
        self._core = ServerMachine(config.secagg(), roster=roster, payload=self._payload)
        self._ceremony_accepted = 0  # joins and the delivery (identical retries not counted)
        #: Clients the encrypted sum went to (those that unmasked): who holds the next model.
        self.recipients: tuple[int, ...] = ()

    @property
    def phase(self) -> ServerPhase:
        """SecAgg's phase."""
        return self._core.phase

    @property
    def abort_reason(self) -> str | None:
        """Why the round was aborted, if it was."""
        return self._core.abort_reason

    @property
    def aborted(self) -> bool:
        """True once the round is aborted."""
        return self._core.aborted

    @property
    def excluded(self) -> dict[int, str]:
        """Clients excluded from the rest of the round, with the reason."""
        return self._core.excluded

    @property
    def survivors(self) -> tuple[int, ...]:
        """U3: clients whose masked ciphertexts are in the sum."""
        return self._core.survivors

    @property
    def contributors(self) -> tuple[int, ...]:
        """The survivors (the HE host's name for them): whose inputs are in the sum."""
        return self._core.survivors

    @property
    def result_blobs(self) -> tuple[bytes, ...] | None:
        """The unmasked encrypted sum, once completed."""
        return self._payload.result_blobs

    def start(self) -> list[tuple[int, HEMaskedServerMessage]]:
        """Announce the round."""
        return [(c, HEMaskedStart(self.config)) for c in self.config.clients]

    def accepted_count(self) -> int:
        """Messages accepted so far, the ceremony's included (identical retries do not count)."""
        return self._core.accepted_count() + self._ceremony_accepted

    def waiting_for(self) -> set[int]:
        """Clients the current phase still expects (SecAgg's answers and the ceremony's)."""
        core = self._core
        waiting = core.waiting_for()
        if core.phase is ServerPhase.ADVERTISE:
            waiting |= set(self.config.clients) - set(self._keys.joins) - set(core.excluded)
        elif core.phase is ServerPhase.SHARE and self._keys.delivery is None:
            if self.config.key_holder not in core.excluded:
                waiting.add(self.config.key_holder)
        return waiting

    def exclude(self, client: int, reason: str) -> None:
        """Exclude ``client`` (the host's decision, or the replay of one)."""
        self._core.exclude(client, reason)

    def abort(self, reason: str) -> list[tuple[int, HEMaskedServerMessage]]:
        """Abort the round (the host's decision, e.g. a restart past the deadline)."""
        return [*self._core.abort(reason)]

    def receive(self, client: int, msg: object) -> None:
        """Accept one message or raise why not (as ServerMachine.receive)."""
        if isinstance(msg, HEJoin | HEKeyDelivery):
            before = (len(self._keys.joins), self._keys.delivery is None)
            self._ceremony(client, msg)
            if (len(self._keys.joins), self._keys.delivery is None) != before:
                self._ceremony_accepted += 1
        elif isinstance(msg, ClientMessage):
            self._core.receive(client, msg)
        else:
            raise WrongPhase(f"{type(msg).__name__} has no place in a bfv-masked round")

    def _ceremony(self, client: int, msg: HEJoin | HEKeyDelivery) -> None:
        core = self._core
        if core.aborted:
            raise RoundAborted(f"round aborted: {core.abort_reason}")
        if client not in self.config.clients:
            raise UnknownClient(f"client {client} is not in this round's cohort")
        if msg.client != client:
            raise AuthenticationFailed(f"message claims client {msg.client}, sender is {client}")
        if msg.round != self.config.round or client in core.excluded:
            raise WrongPhase("stale round, or a client no longer in the round")
        try:
            if isinstance(msg, HEJoin) and core.phase is ServerPhase.ADVERTISE:
                self._keys.on_join(client, msg)
            elif (
                isinstance(msg, HEKeyDelivery)
                and core.phase is ServerPhase.SHARE
                and client == self.config.key_holder
            ):
                self._keys.on_delivery(msg)
                assert self._keys.public is not None
                self._payload.attach(self._keys.public)
            else:
                raise WrongPhase(
                    f"{type(msg).__name__} is not accepted in phase {core.phase.value}"
                )
        except WrongPhase:
            raise
        except ProtocolError as exc:
            core.exclude(client, str(exc))
            raise

    def ready_to_advance(self) -> bool:
        """Everyone expected answered (the host may advance earlier at a deadline)."""
        core = self._core
        if not core.ready_to_advance():
            return False
        if core.phase is ServerPhase.ADVERTISE:
            return set(self._keys.joins) >= set(self.config.clients) - set(core.excluded)
        if core.phase is ServerPhase.SHARE:
            return self._keys.delivery is not None or self.config.key_holder in core.excluded
        return True

    def advance(self) -> list[tuple[int, HEMaskedServerMessage]]:
        """Close the phase: non-responders drop out; returns the next requests."""
        core = self._core
        phase = core.phase
        if phase is ServerPhase.SHARE and self._keys.delivery is None:
            return [*core.abort("the key holder did not deliver the HE key")]
        out: list[tuple[int, HEMaskedServerMessage]] = [*core.advance()]
        if core.aborted:
            return out
        to = {c for c, _ in out}
        if phase is ServerPhase.ADVERTISE:
            joins = self._keys.close_joins(among=to)  # only clients that are in U1 get a key
            if joins is None:
                return [*core.abort("the key holder did not join, or too few clients did")]
            return [(j.client, HEKeys(joins)) for j in joins] + out
        if phase is ServerPhase.SHARE:
            return [(c, bundle) for c, bundle in self._keys.bundles() if c in to] + out
        if core.phase is ServerPhase.COMPLETED:
            assert self._payload.result_blobs is not None
            self.recipients = tuple(sorted(to))
            blobs = self._payload.result_blobs
            return [(c, HEResult(blobs, core.survivors)) for c in self.recipients]
        return out


# ---------------------------------------------------------------- in-memory round

#: Phases in the order clients answer them; a drop at a phase = silence from then on.
PHASES = ("advertise", "share", "masked", "consistency", "unmask")
Clock = Callable[[], float]


@dataclass
class HEMaskedReport:
    """What an in-memory hybrid round did, with per-party timings when a clock is given."""

    completed: bool
    abort_reason: str | None
    survivors: tuple[int, ...]
    dropped: dict[str, list[int]]
    totals: dict[int, np.ndarray]  # each receiving client's decrypted Σ w·q(x)
    results: dict[int, np.ndarray]  # each receiving client's weighted mean
    weight_sum: int | None
    exact: bool | None  # every decrypted sum equals Σ w·levels over the survivors
    upload_bytes: int
    rejections: list[tuple[int, str]]
    client_seconds: dict[str, dict[int, float]] = field(default_factory=dict)
    server_receive_s: dict[str, float] = field(default_factory=dict)
    server_advance_s: dict[str, float] = field(default_factory=dict)


def run_he_masked_round(
    config: HEMaskedConfig,
    *,
    levels: Mapping[int, np.ndarray],
    weights: Mapping[int, int],
    roster_keys: Mapping[int, SigningKey],
    rng: RandomSource,
    drops: Mapping[str, Sequence[int]] | None = None,
    clock: Clock | None = None,
    tap: Callable[[int, HEMaskedClientMessage], None] | None = None,
    policy: ClientPolicy | None = None,
) -> HEMaskedReport:
    """One hybrid round over an in-memory transport (clients get ``policy``, else the lab's).

    ``drops`` maps a phase of :data:`PHASES` to the clients that go silent when
    that phase's requests reach them. ``tap`` sees every client message before
    the server does (tests use it to play a colluding server).
    """
    drop_at = {c: phase for phase, ids in (drops or {}).items() for c in ids}
    if any(phase not in PHASES for phase in drop_at.values()):
        raise ParameterError(f"drop phases must be in {PHASES}")
    roster = {c: k.public for c, k in roster_keys.items()}
    server = HEMaskedServerMachine(config, roster=roster)
    clients = {
        c: HEMaskedClientMachine(
            c,
            rng=rng,
            signing_key=roster_keys[c],
            roster=roster,
            policy=policy or lab_policy(config.secagg()),
        )
        for c in config.clients
    }
    for c, machine in clients.items():
        machine.set_levels(levels[c], weight=weights[c], model_hash=config.model_hash)
    tick: Clock = clock or (lambda: 0.0)
    report = HEMaskedReport(
        completed=False,
        abort_reason=None,
        survivors=(),
        dropped={p: [] for p in PHASES},
        totals={},
        results={},
        weight_sum=None,
        exact=None,
        upload_bytes=0,
        rejections=[],
    )
    gone: set[int] = set()
    outbox = server.start()
    for phase in [*PHASES, "result"]:
        seconds = report.client_seconds.setdefault(phase, {})
        report.server_receive_s[phase] = 0.0
        for cid, msg in outbox:
            if cid in gone:
                continue
            if drop_at.get(cid) == phase:
                gone.add(cid)
                report.dropped[phase].append(cid)
                continue
            start = tick()
            replies = clients[cid].handle(msg)
            seconds[cid] = seconds.get(cid, 0.0) + tick() - start
            for reply in replies:
                if isinstance(reply, MaskedInput):
                    report.upload_bytes = max(report.upload_bytes, len(reply.payload))
                if tap is not None:
                    tap(cid, reply)
                start = tick()
                try:
                    server.receive(cid, reply)
                except ProtocolError as exc:
                    report.rejections.append((cid, f"{type(exc).__name__}: {exc}"))
                report.server_receive_s[phase] += tick() - start
        if phase == "result" or server.phase in (ServerPhase.ABORTED, ServerPhase.COMPLETED):
            break
        start = tick()
        outbox = server.advance()
        report.server_advance_s[phase] = tick() - start
        if server.aborted:
            for cid, msg in outbox:
                if cid not in gone:
                    clients[cid].handle(msg)
            break
    report.completed = server.phase is ServerPhase.COMPLETED
    report.abort_reason = server.abort_reason
    report.survivors = server.survivors
    for c, machine in clients.items():
        if machine.total is not None and machine.result is not None:
            report.totals[c] = machine.total
            report.results[c] = machine.result
            report.weight_sum = machine.weight_sum
    if report.completed:
        expected = np.zeros(config.dim, dtype=object)
        for c in report.survivors:
            expected = expected + np.asarray(levels[c]).astype(object) * weights[c]
        want = sum(weights[c] for c in report.survivors)
        report.exact = bool(report.totals) and all(
            np.array_equal(total.astype(object), expected) and clients[c].weight_sum == want
            for c, total in report.totals.items()
        )
    return report
