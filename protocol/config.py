"""Round configuration and the threshold policy.

The config is public: the server announces it and every client checks it
and binds its canonical encoding into the session id, so two clients shown
different configs (model inconsistency) end up in different sessions and
abort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from secagg.encoding import encode
from secagg.errors import ParameterError
from secagg.quantization import Quantizer, check_no_wrap

PROTOCOL_VERSION = 1
#: ``plain`` sends updates in the clear: the benchmark baseline, refused by default.
Profile = Literal["active", "semi-honest", "plain"]
PROFILES: tuple[Profile, ...] = ("active", "semi-honest", "plain")
#: The profiles the SecAgg machines run (``plain`` has its own, protocol.plain).
SECURE_PROFILES: tuple[Profile, ...] = ("active", "semi-honest")


@dataclass(frozen=True, slots=True)
class RoundConfig:
    """Everything a client must agree to before it contributes to a round.

    ``clients`` is the cohort (roster ids, strictly increasing); a client's
    Shamir index is its position in the cohort plus one. ``degree`` is the
    SecAgg+ neighbour count k, self excluded (None = complete graph, i.e.
    SecAgg); the graph itself is drawn from the session id. ``nonce`` is
    fresh per round, so no two sessions share an id even with equal configs. The masked
    vector has ``dim`` model coordinates plus one weight coordinate.
    """

    round: int
    clients: tuple[int, ...]
    threshold: int
    dim: int
    modulus_bits: int
    clip: float
    levels: int
    max_weight: int
    profile: Profile
    degree: int | None
    nonce: bytes
    model_hash: bytes

    def __post_init__(self) -> None:
        n = len(self.clients)
        if self.round < 0:
            raise ParameterError("round must be non-negative")
        if n < 1 or any(c < 1 for c in self.clients):
            raise ParameterError("cohort must hold positive client ids")
        if list(self.clients) != sorted(set(self.clients)):
            raise ParameterError("cohort ids must be strictly increasing")
        if not 1 <= self.threshold <= n:
            raise ParameterError(f"threshold must be in [1, {n}]")
        if self.dim < 1:
            raise ParameterError("dim must be positive")
        if self.profile not in PROFILES:
            raise ParameterError(f"profile must be one of {PROFILES}")
        if self.degree is not None and not 1 <= self.degree:
            raise ParameterError("degree must be positive")
        if len(self.nonce) != 32 or len(self.model_hash) != 32:
            raise ParameterError("nonce and model hash must be 32 bytes")
        if self.max_weight < 1:
            raise ParameterError("max_weight must be at least 1")
        Quantizer(self.clip, self.levels)  # validates clip and levels
        check_no_wrap(n, self.levels, self.max_weight, self.modulus_bits)

    @property
    def n(self) -> int:
        """Cohort size."""
        return len(self.clients)

    @property
    def quantizer(self) -> Quantizer:
        """The fixed-point encoding of this round."""
        return Quantizer(self.clip, self.levels)

    @property
    def vector_length(self) -> int:
        """Words in a masked vector: the model coordinates plus the weight."""
        return self.dim + 1

    def index_of(self, client: int) -> int:
        """Shamir x-coordinate of ``client`` (1-based cohort position)."""
        return self.clients.index(client) + 1

    def canonical(self) -> bytes:
        """Unambiguous encoding, bound into the session id."""
        return encode(
            "round-config",
            PROTOCOL_VERSION,
            self.round,
            encode(*self.clients),
            self.threshold,
            self.dim,
            self.modulus_bits,
            self.clip.hex(),
            self.levels,
            self.max_weight,
            self.profile,
            0 if self.degree is None else self.degree,
            self.nonce,
            self.model_hash,
        )


#: k_min: the fewest honest contributors (distinct organisations) an aggregate may hold.
#: The one name for it: SecAgg's thresholds and survivors, the client policy's
#: ``min_honest`` default, and the fewest inputs an HE sum clients decrypt may hold.
MIN_HONEST = 3


def minimum_threshold(
    n: int, *, profile: Profile, colluders: int, min_honest: int = MIN_HONEST
) -> int:
    """Smallest safe threshold for a cohort of n with up to ``colluders`` corrupt clients.

    Active (malicious server): two disjoint honest views must not both reach
    t shares, so t > (n + n_C)/2 (Bonawitz et al.). Semi-honest: the server
    plus n_C clients must not reach t alone, so t > n_C. Either way every
    aggregate must also hold ≥ k_min honest inputs, t ≥ n_C + k_min. The result
    may exceed n: such a cohort is too small for that many colluders.
    """
    if not 0 <= colluders < n:
        raise ParameterError("colluders must be in [0, n)")
    bound = (n + colluders) // 2 + 1 if profile == "active" else colluders + 1
    return max(bound, colluders + min_honest)


def default_colluders(n: int, *, sparse: bool = False) -> int:
    """The colluders an in-memory lab assumes for a cohort of n (simulations, benchmarks).

    A client never uses this: its n_C is a fact about the consortium
    (:mod:`protocol.policy`). Complete graph: fewer than a third; sparse: 5%.
    """
    if sparse:
        return n // 20
    return max(0, (n - 1) // 3)
