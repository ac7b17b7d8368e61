"""One driver per mode family: what a round's host does differently per ``settings.mode``.

The coordinator (:mod:`aggregator.coordinator`) runs every round alike: the
clock, the cohort, the outboxes, the event log and its replay. What the mode
changes sits behind :class:`Driver`'s small interface, picked once
(:func:`driver_for`):

- :class:`MaskingDriver` (``mode = "secagg"``, every profile: SecAgg,
  SecAgg+ and the plain baseline): the aggregator holds the model, takes the
  FedAvg step on the unmasked sum and checkpoints it; it serves the current
  model.
- :class:`CKKSDriver` and :class:`BFVMaskedDriver` (``"ckks"``,
  ``"bfv-masked"``; their common part is :class:`HEDriver`): the aggregator
  sums ciphertexts and never sees a model after θ₀, which it alone serves; the
  lineage and who holds the current model survive instead, and only those
  clients make a cohort (:mod:`aggregator.he_rounds`).

A method's part (FedFace's S, the DP releases) is the coordinator's
``methods`` (:mod:`aggregator.method_state`), handed to the drivers where a
round is built or committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from aggregator import he_rounds
from aggregator.method_state import FedAvgRounds, MethodRounds
from aggregator.settings import AggregatorSettings
from aggregator.spool import SpooledPayload
from aggregator.store import Store
from protocol.build import make_config
from protocol.config import MIN_HONEST, RoundConfig, minimum_threshold
from protocol.dp_round import round_colluders, round_plan
from protocol.errors import ProtocolError, WrongPhase
from protocol.he_messages import (
    HEClientMessage,
    HEConfig,
    HEJoin,
    HEKeyDelivery,
    HEMaskedConfig,
    HEUpload,
)
from protocol.he_model import model_sha256, sum_digest
from protocol.messages import ClientMessage, MaskedInput
from protocol.method_messages import MethodState, bound_model_hash, lineage_digest
from protocol.plain import PlainServer
from protocol.policy import consortium_colluders
from protocol.server import ServerMachine
from secagg.rng import RandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb

if TYPE_CHECKING:
    from protocol.he_flow import HEServerMachine  # TenSEAL: loaded in HE modes only
    from protocol.he_masked import HEMaskedServerMachine

    Machine = ServerMachine | PlainServer | HEServerMachine | HEMaskedServerMachine

AnyConfig = RoundConfig | HEConfig | HEMaskedConfig
#: What a machine receives: a client's protocol message (a method's release goes to the host).
ProtocolMessage = ClientMessage | HEClientMessage
Methods = MethodRounds | FedAvgRounds
C = TypeVar("C", bound=AnyConfig)
M = TypeVar("M")
H = TypeVar("H", bound="HEServerMachine | HEMaskedServerMachine")


def round_threshold(s: AggregatorSettings, n: int, roster_size: int) -> int:
    """The round's threshold: the setting, else make_config's default, raised so that a
    client's default policy accepts it (clients take n_C from the roster, not the cohort:
    protocol/policy.py)."""
    t = make_config(
        clients=n,
        dim=1,
        threshold=s.threshold or None,
        degree=s.degree or None,
        profile=s.profile,
    ).threshold
    if s.threshold or s.degree or s.profile == "plain":
        return t
    colluders = consortium_colluders(roster_size)
    if colluders >= n:
        return t  # no threshold helps: clients refuse the cohort (and say why)
    return min(n, max(t, minimum_threshold(n, profile=s.profile, colluders=colluders)))


@dataclass(frozen=True)
class Outcome:
    """A finished attempt's result, as its RoundRecord shows it."""

    completed: bool
    survivors: list[int]
    weight_sum: int | None
    total_sha256: str | None


class Driver(ABC, Generic[C, M]):
    """What the coordinator asks of a mode; ``C`` its round config, ``M`` its server machine."""

    #: The smallest cohort a round starts with.
    fewest = 2
    #: Keep the previous attempt's outboxes for late polls (a client that misses the
    #: round's result would fall behind for good).
    keeps_late_messages = False
    #: The log lines of a completed (round, survivors) and an aborted (round, reason) round.
    completed_log = "round %d completed with %d survivors"
    aborted_log = "round %d aborted: %s"

    def __init__(self, settings: AggregatorSettings, roster: dict[int, bytes], store: Store):
        self.settings = settings
        self.roster = roster
        self.store = store

    # ---------------------------------------------------------------- durable state

    @abstractmethod
    def recover(self, round_: int, model: np.ndarray) -> tuple[int, np.ndarray]:
        """Rounds completed and the model, from what the last run committed."""

    @abstractmethod
    def commit(
        self, round_: int, machine: M, model: np.ndarray, methods: Methods
    ) -> tuple[int, np.ndarray]:
        """Commit completed round ``round_``: the next round and model, durably (the
        method's state is saved first, so a restart serves the same one)."""

    # ---------------------------------------------------------------- a round

    def cohort(
        self, present: list[int], awaited: list[int], wanted: int
    ) -> tuple[list[int], list[int], int]:
        """(present, awaited, wanted) narrowed to the clients that can take part."""
        return present, awaited, wanted

    @abstractmethod
    def config(
        self,
        round_: int,
        cohort: tuple[int, ...],
        rng: RandomSource,
        model: np.ndarray,
        state: MethodState | None,
    ) -> C:
        """Round ``round_``'s config for ``cohort`` (a fresh nonce from ``rng``), bound to
        the model (or lineage) and the method's ``state``."""

    @abstractmethod
    def encode(self, config: C) -> bytes:
        """The config as the store keeps it."""

    @abstractmethod
    def decode(self, raw: bytes) -> C:
        """A stored config (:meth:`encode`) back."""

    @abstractmethod
    def machine(self, config: C) -> M:
        """The server machine that runs ``config``'s round."""

    @abstractmethod
    def deliver(self, machine: M, client: int, msg: ProtocolMessage) -> None:
        """Hand one client message to the machine."""

    @abstractmethod
    def receive_masked(self, machine: M, client: int, round_: int, payload: SpooledPayload) -> None:
        """Hand an uploaded masked input (a spool file) to the machine."""

    @abstractmethod
    def outcome(self, machine: M) -> Outcome:
        """What the finished attempt produced."""

    # ---------------------------------------------------------------- serving

    @abstractmethod
    def check_model_round(self, round_: int, current: int) -> None:
        """Refuse (WrongPhase) to serve round ``round_``'s model if it is not here."""

    def max_payload(self) -> int:
        """Bytes one uploaded masked input may hold (one float64 a coordinate and framing)."""
        return (self.settings.vector_dim + 1) * 8 + 1024

    def _members(self, config: AnyConfig) -> dict[int, bytes]:
        return {c: self.roster[c] for c in config.clients}


class MaskingDriver(Driver[RoundConfig, "ServerMachine | PlainServer"]):
    """``mode = "secagg"``: pairwise-masked (or plain) rounds; the aggregator steps the model."""

    def recover(self, round_: int, model: np.ndarray) -> tuple[int, np.ndarray]:
        checkpoint = self.store.latest_checkpoint()
        if checkpoint is None:
            return round_, model
        round_, stored = checkpoint
        if stored.shape != (self.settings.dim,):
            raise ProtocolError("checkpoint does not match the configured dimension")
        return round_, stored.astype(np.float32)

    def commit(
        self,
        round_: int,
        machine: ServerMachine | PlainServer,
        model: np.ndarray,
        methods: Methods,
    ) -> tuple[int, np.ndarray]:
        result = machine.result
        assert result is not None
        if result.weight_sum > 0:
            # θ's step; S and the releases: the method's next state
            update = methods.finish(round_, result.weighted_mean(), result.weight_sum)
            model = (model + self.settings.learning_rate * update).astype(np.float32)
        else:
            methods.finish(round_, np.zeros(self.settings.vector_dim), 0)
        methods.save()  # before the checkpoint: a restart serves the same state
        round_ += 1
        self.store.save_checkpoint(round_, model)
        return round_, model

    def config(
        self,
        round_: int,
        cohort: tuple[int, ...],
        rng: RandomSource,
        model: np.ndarray,
        state: MethodState | None,
    ) -> RoundConfig:
        # make_config holds the defaults (safe threshold, minimal modulus); this round
        # differs only in its cohort, its fresh nonce and the model it announces.
        s = self.settings
        levels, clip, max_weight = s.levels, s.clip, s.max_weight
        dim = s.vector_dim  # the model, then a method's extras (FedFace's S_k/n_k)
        threshold = round_threshold(s, len(cohort), len(self.roster))
        if s.dp_noise_multiplier > 0:  # the quantiser the DP plan fixes (protocol/dp_round.py)
            plan = round_plan(
                dim=dim,
                clients=len(cohort),
                threshold=threshold,
                l2_clip=s.dp_clip,
                noise_multiplier=s.dp_noise_multiplier,
                colluders=round_colluders(
                    len(cohort), s.dp_colluders, sparse=0 < s.degree < len(cohort) - 1
                ),
            )
            levels, clip, max_weight = plan.levels, plan.quantizer_clip, 1
        base = make_config(
            clients=len(cohort),
            dim=dim,
            threshold=threshold,
            degree=s.degree or None,
            profile=s.profile,
            levels=levels,
            clip=clip,
            max_weight=max_weight,
            round_=round_,
        )
        return dataclasses.replace(
            base,
            clients=cohort,
            degree=s.degree or None,
            nonce=rng.random_bytes(32),
            # The model's hash, bound to the method state the RoundStart carries (if any).
            model_hash=bound_model_hash(model.astype("<f4").tobytes(), state),
        )

    def encode(self, config: RoundConfig) -> bytes:
        return codec.config_to_proto(config).SerializeToString()

    def decode(self, raw: bytes) -> RoundConfig:
        return codec.config_from_proto(pb.RoundConfig.FromString(raw))

    def machine(self, config: RoundConfig) -> ServerMachine | PlainServer:
        if config.profile == "plain":
            return PlainServer(config)
        roster = self._members(config) if config.profile == "active" else {}
        return ServerMachine(config, roster=roster)

    def deliver(
        self, machine: ServerMachine | PlainServer, client: int, msg: ProtocolMessage
    ) -> None:
        if isinstance(msg, HEJoin | HEKeyDelivery | HEUpload):
            raise WrongPhase(f"{type(msg).__name__} belongs to an HE round; this one is not")
        machine.receive(client, msg)

    def receive_masked(
        self,
        machine: ServerMachine | PlainServer,
        client: int,
        round_: int,
        payload: SpooledPayload,
    ) -> None:
        """SecAgg's machine sums the spool file in slices; the plain baseline's reads it whole."""
        if isinstance(machine, ServerMachine):
            machine.receive_masked(client, round_, payload)
        else:
            machine.receive(client, MaskedInput(client, round_, payload.read(0, payload.length)))

    def outcome(self, machine: ServerMachine | PlainServer) -> Outcome:
        result = machine.result
        if result is None:
            return Outcome(False, [], None, None)
        total = hashlib.sha256(np.ascontiguousarray(result.total).tobytes()).hexdigest()
        return Outcome(True, list(machine.survivors), result.weight_sum, total)

    def check_model_round(self, round_: int, current: int) -> None:
        """Only the current model is served."""
        if round_ != current:
            raise WrongPhase(f"model of round {round_} is not available (current {current})")


class HEDriver(Driver[C, H]):
    """The homomorphic modes' common part (see :mod:`aggregator.he_rounds`): no model step,
    the lineage and the in-sync clients survive instead, in ``he-state.json``."""

    fewest = MIN_HONEST  # k_min: a decrypted mean over fewer is refused
    keeps_late_messages = True  # only the clients hold the model: its sum must reach them
    completed_log = "HE round %d completed: %d contributors"
    aborted_log = "HE round %d aborted: %s"

    def __init__(
        self,
        settings: AggregatorSettings,
        roster: dict[int, bytes],
        store: Store,
        initial: np.ndarray,
    ) -> None:
        super().__init__(settings, roster, store)
        self._initial_hash = model_sha256(initial)
        #: Rounds done, the model's lineage, who holds the current model.
        self.state = he_rounds.HEState(0, self._initial_hash, None)

    def recover(self, round_: int, model: np.ndarray) -> tuple[int, np.ndarray]:
        """No model checkpoints: the clients hold the model."""
        self.state = he_rounds.load_state(self.store.path.parent, self._initial_hash)
        return self.state.round, model

    def commit(
        self, round_: int, machine: H, model: np.ndarray, methods: Methods
    ) -> tuple[int, np.ndarray]:
        blobs = machine.result_blobs
        assert blobs is not None
        methods.finish_he(round_)  # the releases go with the next HEStart
        methods.save()  # before the round's commit, as in masked rounds
        # Who holds the next model: the clients the sum went to (bfv-masked: those
        # that unmasked, a subset of the contributors).
        self.state = self.state.after(round_, blobs, machine.recipients)
        he_rounds.save_state(self.store.path.parent, self.state)  # the commit of the round
        return self.state.round, model

    def cohort(
        self, present: list[int], awaited: list[int], wanted: int
    ) -> tuple[list[int], list[int], int]:
        """Only clients holding the current model can take part."""
        in_sync = self.state.in_sync
        return (
            list(he_rounds.cohort(present, self.state)),
            [c for c in awaited if in_sync is None or c in in_sync],
            min(wanted, he_rounds.eligible(self.state, len(self.roster))),
        )

    def deliver(self, machine: H, client: int, msg: ProtocolMessage) -> None:
        machine.receive(client, msg)

    def receive_masked(self, machine: H, client: int, round_: int, payload: SpooledPayload) -> None:
        """Read whole: bfv-masked's ciphertexts (ckks refuses a MaskedInput)."""
        machine.receive(client, MaskedInput(client, round_, payload.read(0, payload.length)))

    def outcome(self, machine: H) -> Outcome:
        blobs = machine.result_blobs
        if blobs is None:
            return Outcome(False, [], None, None)
        # No weight sum: it is encrypted; the record's digest is the encrypted sum's.
        return Outcome(True, list(machine.contributors), None, sum_digest(blobs).hex())

    def check_model_round(self, round_: int, current: int) -> None:
        """The aggregator holds θ₀ only and serves it for round 0 (a client without a model
        asks for it); later models exist only on the clients."""
        if round_ != 0:
            raise WrongPhase(
                f"model of round {round_} is not here: in {self.settings.mode} mode the "
                "aggregator "
                "holds only the initial model (round 0), the clients hold the rest"
            )


class CKKSDriver(HEDriver[HEConfig, "HEServerMachine"]):
    """``mode = "ckks"``: one member holds the CKKS key; the others upload ciphertexts."""

    def config(
        self,
        round_: int,
        cohort: tuple[int, ...],
        rng: RandomSource,
        model: np.ndarray,
        state: MethodState | None,
    ) -> HEConfig:
        s = self.settings
        return he_rounds.make_config(
            round_=round_,
            clients=cohort,
            dim=s.vector_dim,  # the model, then a method's extras (FedFace's S_k/n_k)
            clip=s.clip,
            max_weight=s.max_weight,
            learning_rate=s.learning_rate,
            nonce=rng.random_bytes(32),
            lineage=lineage_digest(self.state.lineage, state),  # bound to the HEStart's state
        )

    def encode(self, config: HEConfig) -> bytes:
        return codec.he_config_to_proto(config).SerializeToString()

    def decode(self, raw: bytes) -> HEConfig:
        return codec.he_config_from_proto(pb.HEConfig.FromString(raw))

    def machine(self, config: HEConfig) -> HEServerMachine:
        from protocol.he_flow import HEServerMachine

        return HEServerMachine(config, roster=self._members(config))


class BFVMaskedDriver(HEDriver[HEMaskedConfig, "HEMaskedServerMachine"]):
    """``mode = "bfv-masked"``: SecAgg's masks inside BFV plaintexts (FedAvg only)."""

    def config(
        self,
        round_: int,
        cohort: tuple[int, ...],
        rng: RandomSource,
        model: np.ndarray,
        state: MethodState | None,
    ) -> HEMaskedConfig:
        s = self.settings
        return he_rounds.make_masked_config(
            round_=round_,
            clients=cohort,
            threshold=round_threshold(s, len(cohort), len(self.roster)),  # active, complete
            dim=s.vector_dim,
            clip=s.clip,
            levels=s.levels,
            max_weight=s.max_weight,
            learning_rate=s.learning_rate,
            nonce=rng.random_bytes(32),
            lineage=self.state.lineage,  # FedAvg only: no method state to bind
        )

    def encode(self, config: HEMaskedConfig) -> bytes:
        return codec.he_masked_config_to_proto(config).SerializeToString()

    def decode(self, raw: bytes) -> HEMaskedConfig:
        return codec.he_masked_config_from_proto(pb.HEMaskedConfig.FromString(raw))

    def machine(self, config: HEMaskedConfig) -> HEMaskedServerMachine:
        from protocol.he_masked import HEMaskedServerMachine

        return HEMaskedServerMachine(config, roster=self._members(config))

    def max_payload(self) -> int:
        """The masked vector travels as BFV ciphertexts."""
        return he_rounds.masked_upload_cap(self.settings.vector_dim)


def driver_for(
    settings: AggregatorSettings, roster: dict[int, bytes], store: Store, initial: np.ndarray
) -> Driver[Any, Any]:
    """The driver of ``settings.mode``; ``initial`` is θ₀ (an HE lineage starts from its hash)."""
    if settings.mode == "secagg":  # the model lives here: nothing to derive from θ₀
        return MaskingDriver(settings, roster, store)
    return HE_DRIVERS[settings.mode](settings, roster, store, initial)


#: The HE modes' drivers. With "secagg" (MaskingDriver: SecAgg, SecAgg+ with a degree,
#: the plain profile) they cover protocol.modes.names("service"); a test checks that.
HE_DRIVERS: dict[str, type[CKKSDriver] | type[BFVMaskedDriver]] = {
    "ckks": CKKSDriver,
    "bfv-masked": BFVMaskedDriver,
}
