"""The homomorphic round's config and messages (:mod:`protocol.he_flow` drives them).

Kept apart from the machines so that the wire codec, request signatures and
a SecAgg-only host can name these types without loading TenSEAL: the
parameter checks import :mod:`secagg.he` only when an HEConfig is built.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from protocol.config import PROTOCOL_VERSION, RoundConfig
from protocol.messages import (
    ClientAbort,
    ClientMessage,
    EncryptedShare,
    RoundComplete,
    ServerAbort,
    ServerMessage,
)
from protocol.method_messages import ClusterRelease, MethodState
from secagg.encoding import encode
from secagg.errors import ParameterError
from secagg.quantization import Quantizer, check_no_wrap

if TYPE_CHECKING:
    from secagg.he import BfvParams, HEParams

HEScheme = Literal["ckks", "bfv"]
HE_SCHEMES: tuple[HEScheme, ...] = ("ckks", "bfv")


@dataclass(frozen=True, slots=True)
class HEConfig:
    """A homomorphic-aggregation round; bound into the session id like RoundConfig.

    Over gRPC the clients hold the model, not the aggregator: ``model_hash`` is
    then the model's lineage (:mod:`protocol.he_model`), which every client
    recomputes from what it applied, and ``learning_rate`` is the step each
    client takes with the decrypted mean.
    """

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
    learning_rate: float = 1.0

    def __post_init__(self) -> None:
        from secagg import he  # TenSEAL loads only where an HE round is really used

        if not self.clients or list(self.clients) != sorted(set(self.clients)):
            raise ParameterError("cohort ids must be strictly increasing")
        if self.key_holder not in self.clients:
            raise ParameterError("the key holder must be in the cohort")
        if self.scheme not in HE_SCHEMES or self.dim < 1 or self.max_weight < 1:
            raise ParameterError("invalid scheme, dim or max_weight")
        if len(self.nonce) != 32 or len(self.model_hash) != 32:
            raise ParameterError("nonce and model hash must be 32 bytes")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ParameterError("learning_rate must be finite and positive")
        n = len(self.clients)
        if isinstance(self.params, he.CkksParams):  # every coordinate of w·x and w is ≤ w_max·clip
            he.check_ckks(self.params, clients=n, max_abs=self.max_weight * max(self.clip, 1.0))
        else:
            Quantizer(self.clip, self.levels)
            worst = max(self.levels - 1, 1) * self.max_weight
            he.check_bfv(self.params, clients=n, max_abs=worst)
            check_no_wrap(n, self.levels, self.max_weight, 62)

    @property
    def params(self) -> HEParams:
        """The fixed, validated parameter profile of the scheme."""
        from secagg import he

        return he.CKKS_8192 if self.scheme == "ckks" else he.BFV_8192

    @property
    def vector_length(self) -> int:
        """Encrypted values per client: the update and its weight (as RoundConfig's)."""
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
            self.learning_rate.hex(),
        )


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class HEStart:
    """Server → clients: the round, and a face-FL method's state (None: FedAvg).

    The state is bound into ``config.model_hash``
    (:func:`protocol.method_messages.lineage_digest`), which clients check.
    """

    config: HEConfig
    state: MethodState | None = None


@dataclass(frozen=True, slots=True)
class HEJoin:
    """Client → server: a fresh X25519 key for receiving the HE secret key, signed.

    ``model_sha256`` is the SHA-256 of the client's own model (empty where the
    host does not bind one); the signature covers it and every client refuses
    a join list whose hashes differ from its own.
    """

    client: int
    round: int
    public: bytes
    signature: bytes
    model_sha256: bytes = b""


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


# ---------------------------------------------------------------- the hybrid mode (bfv-masked)


@dataclass(frozen=True, slots=True)
class HEMaskedConfig:
    """A hybrid round (:mod:`protocol.he_masked`); SecAgg's and the key ceremony's configs
    derive from it. Kept here so the codec names it without loading TenSEAL."""

    round: int
    clients: tuple[int, ...]
    threshold: int
    dim: int
    key_holder: int
    clip: float
    levels: int
    max_weight: int
    nonce: bytes
    model_hash: bytes
    #: Over gRPC each client steps its own model with the decrypted mean (aggregator/he_rounds).
    learning_rate: float = 1.0

    def __post_init__(self) -> None:
        if len(self.nonce) != 32:
            raise ParameterError("nonce must be 32 bytes")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ParameterError("learning_rate must be finite and positive")
        self.keys()  # cohort, key holder, and he.check_bfv: the n-client sum fits t
        self.secagg()  # threshold, dim, quantisation

    @property
    def params(self) -> BfvParams:
        """The BFV profile; its plain modulus t is the masking modulus."""
        from secagg import he  # TenSEAL loads only where an HE round is really used

        return he.BFV_8192

    @property
    def vector_length(self) -> int:
        """Values per client: the update and its weight."""
        return self.dim + 1

    def canonical(self) -> bytes:
        """Unambiguous encoding, from which both derived configs' nonces are drawn."""
        p = self.params
        return encode(
            "he-masked-config",
            PROTOCOL_VERSION,
            self.round,
            encode(*self.clients),
            self.threshold,
            self.dim,
            self.key_holder,
            self.clip.hex(),
            self.levels,
            self.max_weight,
            p.poly_degree,
            p.plain_modulus,
            encode(*p.coeff_mod_bits),
            self.nonce,
            self.model_hash,
            self.learning_rate.hex(),
        )

    def secagg(self) -> RoundConfig:
        """SecAgg's config (active, complete graph); modulus bits are t's size (unused)."""
        return RoundConfig(
            round=self.round,
            clients=self.clients,
            threshold=self.threshold,
            dim=self.dim,
            modulus_bits=self.params.plain_modulus.bit_length(),
            clip=self.clip,
            levels=self.levels,
            max_weight=self.max_weight,
            profile="active",
            degree=None,
            nonce=self._derived_nonce("he-masked/secagg"),
            model_hash=self.model_hash,
        )

    def keys(self) -> HEConfig:
        """The key ceremony's config (BFV)."""
        return HEConfig(
            round=self.round,
            clients=self.clients,
            dim=self.dim,
            scheme="bfv",
            key_holder=self.key_holder,
            clip=self.clip,
            max_weight=self.max_weight,
            levels=self.levels,
            nonce=self._derived_nonce("he-masked/keys"),
            model_hash=self.model_hash,
        )

    def _derived_nonce(self, label: str) -> bytes:
        return hashlib.sha256(encode(label, self.canonical())).digest()


@dataclass(frozen=True, slots=True)
class HEMaskedStart:
    """Server → clients: the hybrid round (clients derive both sub-configs themselves)."""

    config: HEMaskedConfig


HEClientMessage = HEJoin | HEKeyDelivery | HEUpload
HEServerMessage = HEStart | HEKeys | HEKeyBundle | HEResult | RoundComplete | ServerAbort
#: What the aggregator's HE machine accepts: the HE messages and a client's abort.
HEInbound = HEClientMessage | ClientAbort
#: Everything the Submit RPC and Poll carry: SecAgg's messages, these, and a method's
#: DP release (protocol/method_messages.py), which the host keeps out of the machines.
AnyClientMessage = ClientMessage | HEClientMessage | ClusterRelease
AnyServerMessage = ServerMessage | HEServerMessage | HEMaskedStart
#: For isinstance checks by hosts that route messages without importing the machines.
HE_CLIENT_TYPES = (HEJoin, HEKeyDelivery, HEUpload)
HE_SERVER_TYPES = (HEStart, HEMaskedStart, HEKeys, HEKeyBundle, HEResult)
