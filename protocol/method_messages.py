"""What the face-FL methods add to a round on the wire (methods.md §4, §5.3, §7).

Two messages, both public by design and both validated here, where every
party decodes them:

- :class:`ClusterRelease` (client → server, in the clear): one DPLC-LSH
  release of PrivacyFace or FedGC-DPC, i.e. Q differentially private
  cluster proxies of the client's own class embeddings (unit centres, noisy
  sizes, public radii). The client charges it to its own zCDP ledger before
  sending; DP survives the server's forwarding (post-processing).
- :class:`MethodState` (server → client, with ``RoundStart``): the method's
  name and what the previous round produced for it: FedFace's securely
  summed second moment S = Σ_k S_k, or every release of that round.

The state is bound into the round's model hash (:func:`bound_model_hash`; in
CKKS rounds into the announced lineage, :func:`lineage_digest`), so clients
shown different states (or methods) end up in different sessions and the
round aborts, exactly as for a different model. Arrays travel as
float32 little-endian bytes, so what a client sends is byte for byte what
the others receive. Pure: numpy and the canonical encoding only.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from protocol.he_model import model_sha256
from secagg.encoding import digest, encode, encode_list
from secagg.errors import ParameterError

#: Methods the gRPC daemons run (the aggregator names one in every MethodState).
METHODS = ("fedavg", "projector", "fedface", "fedgc", "privacyface")
#: Methods that release DP clusters in the clear each round.
RELEASING = ("fedgc", "privacyface")
#: Methods that exist only in `secagg experiment`, with the reason.
IN_MEMORY_ONLY = {
    "fedgc-reference": (
        "fedgc-reference is the published FedGC, in which the server sees every class "
        "embedding (a trusted aggregator); it runs only in `secagg experiment`, never over "
        'the gRPC service: use method = "fedgc" (FedGC-DPC, the private default)'
    ),
}
#: Hard caps on one release, whatever the aggregator allows (a few MiB at most).
MAX_CLUSTERS = 4096
MAX_DIM = 4096
#: A released centre is the normalised noisy sum: anything further from unit is malformed.
UNIT_TOLERANCE = 1e-3


def check_method(method: str) -> None:
    """Raise ParameterError unless the daemons can run ``method`` (with the reason)."""
    if method in IN_MEMORY_ONLY:
        raise ParameterError(IN_MEMORY_ONLY[method])
    if method not in METHODS:
        raise ParameterError(f"unknown method {method!r} (the daemons run {METHODS})")


def extra_dim(method: str, embedding_dim: int) -> int:
    """Values a method appends to each masked vector: FedFace's S_k/n_k (d²), else none."""
    return embedding_dim * embedding_dim if method == "fedface" else 0


def _f32(raw: bytes, count: int, name: str) -> np.ndarray:
    if len(raw) != 4 * count:
        raise ParameterError(f"{name}: expected {count} float32 values, got {len(raw)} bytes")
    values = np.frombuffer(raw, dtype="<f4")
    if not np.all(np.isfinite(values)):
        raise ParameterError(f"{name}: values must be finite (NaN or infinity found)")
    return values


@dataclass(frozen=True, slots=True)
class ClusterRelease:
    """Client → server: Q DP clusters of this client's class embeddings, d-dimensional.

    ``centers`` (Q·d), ``sizes`` (Q) and ``radii`` (Q) are float32
    little-endian. Invalid content (shapes, NaN, non-unit centres, radii
    outside [0, π)) raises ParameterError, which the codec turns into
    InvalidMessage.
    """

    client: int
    round: int
    dim: int
    centers: bytes
    sizes: bytes
    radii: bytes

    def __post_init__(self) -> None:
        if self.client < 1 or self.round < 0:
            raise ParameterError("a release names a positive client id and a round ≥ 0")
        if not 1 <= self.dim <= MAX_DIM:
            raise ParameterError(f"release dimension must be in [1, {MAX_DIM}], got {self.dim}")
        if len(self.sizes) % 4:
            raise ParameterError("sizes must be float32 values")
        count = len(self.sizes) // 4
        if count > MAX_CLUSTERS:
            raise ParameterError(f"a release holds at most {MAX_CLUSTERS} clusters, got {count}")
        centers = _f32(self.centers, count * self.dim, "centers").reshape(count, self.dim)
        _f32(self.sizes, count, "sizes")
        radii = _f32(self.radii, count, "radii")
        norms = np.linalg.norm(centers.astype(np.float64), axis=1)
        if np.any(np.abs(norms - 1.0) > UNIT_TOLERANCE):
            raise ParameterError("release centres must be unit vectors")
        if np.any((radii < 0) | (radii >= math.pi)):
            raise ParameterError("release radii must be angles in [0, π)")

    @staticmethod
    def of(
        client: int, round_: int, centers: np.ndarray, sizes: np.ndarray, radii: np.ndarray
    ) -> ClusterRelease:
        """Pack arrays (centres (Q, d)) as float32, re-normalising the centres after rounding."""
        c = np.asarray(centers, dtype=np.float64)
        if c.ndim != 2:
            raise ParameterError(f"centres must be (Q, d), got shape {c.shape}")
        c32 = c.astype(np.float32)
        if c32.size:
            c32 = c32 / np.linalg.norm(c32, axis=1, keepdims=True).astype(np.float32)
        return ClusterRelease(
            client=client,
            round=round_,
            dim=int(c.shape[1]),
            centers=c32.astype("<f4").tobytes(),
            sizes=np.asarray(sizes, dtype="<f4").tobytes(),
            radii=np.asarray(radii, dtype="<f4").tobytes(),
        )

    def __len__(self) -> int:
        return len(self.sizes) // 4

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centres (Q, d), sizes (Q,), radii (Q,)) as float64 copies."""
        centers = np.frombuffer(self.centers, dtype="<f4").reshape(len(self), self.dim)
        return (
            centers.astype(np.float64),
            np.frombuffer(self.sizes, dtype="<f4").astype(np.float64),
            np.frombuffer(self.radii, dtype="<f4").astype(np.float64),
        )

    def canonical(self) -> bytes:
        """Unambiguous encoding (request signatures and the state digest cover it)."""
        return encode(
            "cluster-release",
            self.client,
            self.round,
            self.dim,
            self.centers,
            self.sizes,
            self.radii,
        )


@dataclass(frozen=True, slots=True)
class MethodState:
    """Server → client with ``RoundStart``: the method and what round ``round`` builds on.

    ``moment`` is FedFace's S (d·d float32, empty otherwise and in round 0);
    ``releases`` are every release of round ``round`` − 1, by client id.
    """

    method: str
    round: int
    moment: bytes = b""
    releases: tuple[ClusterRelease, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ParameterError(f"unknown method {self.method!r} (one of {METHODS})")
        if self.round < 0:
            raise ParameterError("round must be ≥ 0")
        if self.moment:
            side = math.isqrt(len(self.moment) // 4)
            if not 1 <= side <= MAX_DIM or side * side * 4 != len(self.moment):
                raise ParameterError("moment must be d × d float32 values")
            _f32(self.moment, side * side, "moment")
        clients = [r.client for r in self.releases]
        if clients != sorted(set(clients)):
            raise ParameterError("releases must be ordered by client, one per client")
        if len({r.dim for r in self.releases}) > 1:
            raise ParameterError("releases of one round must share their dimension")

    def moment_matrix(self) -> np.ndarray | None:
        """S as a (d, d) float64 array, or None when there is none."""
        if not self.moment:
            return None
        side = math.isqrt(len(self.moment) // 4)
        return np.frombuffer(self.moment, dtype="<f4").reshape(side, side).astype(np.float64)

    def canonical(self) -> bytes:
        """Unambiguous encoding, bound into the model hash."""
        return encode(
            "method-state",
            self.method,
            self.round,
            self.moment,
            encode_list(r.canonical() for r in self.releases),
        )


def bound_model_hash(model_bytes: bytes, state: MethodState | None) -> bytes:
    """The model hash a round config carries: the model bound to the method state.

    Without a state it is the plain model hash
    (:func:`protocol.he_model.model_sha256`), so FedAvg rounds (and CKKS
    lineages) are unchanged; with one, a digest over both, so clients shown
    another state land in another session.
    """
    if state is None:
        return model_sha256(model_bytes)
    return digest(
        "secagg/v1/model+method",
        hashlib.sha256(model_bytes).digest(),
        hashlib.sha256(state.canonical()).digest(),
    )


def lineage_digest(lineage: bytes, state: MethodState | None) -> bytes:
    """What a CKKS round's config announces as ``model_hash``: the lineage, bound to the state.

    Without a state it is the lineage itself (FedAvg CKKS rounds are
    unchanged). With one, every client recomputes it from its own lineage and
    the HEStart's state, so a client shown another state (or another method)
    refuses the round instead of training against different releases.
    """
    if len(lineage) != 32:
        raise ParameterError("a lineage is 32 bytes")
    if state is None:
        return lineage
    return digest("secagg/v1/lineage+method", lineage, hashlib.sha256(state.canonical()).digest())


def server_step(
    mean: np.ndarray, theta_dim: int, weight_sum: float
) -> tuple[np.ndarray, np.ndarray]:
    """(the θ step, Σ_k of the appended values) from the weighted mean of a round's vectors.

    Every host (the service and the in-process lab) takes the same step, whatever the
    method: the first ``theta_dim`` entries move the model, the rest are the method's
    appended values (FedFace's S_k/n_k), weighted back into a sum.
    """
    return mean[:theta_dim], mean[theta_dim:] * weight_sum
