"""The aggregator's part in homomorphic rounds over gRPC (``mode = "ckks"``, ``"bfv-masked"``).

The coordinator drives :class:`protocol.he_flow.HEServerMachine` (ckks) and
:class:`protocol.he_masked.HEMaskedServerMachine` (bfv-masked: SecAgg's masks
inside BFV plaintexts, so no single client holding the key can read another's
upload) exactly as it drives SecAgg's machine (same log, replay and
deadlines), through the HE drivers (:class:`aggregator.drivers.HEDriver`:
``CKKSDriver``, ``BFVMaskedDriver``); this module holds the rules and the
state those drivers apply, in both modes:

- **No model after θ₀.** The aggregator sums ciphertexts with a keyless
  context and never sees the aggregate, so it takes no FedAvg step: it serves
  θ₀ (zeros or ``initial_model``) for round 0 only, and every client keeps and
  updates its own copy (:mod:`protocol.he_model`).
- **The lineage instead of a model hash.** Each round's HEConfig announces
  the model's lineage: θ₀'s hash chained over the digest of every encrypted
  sum sent so far. Clients check it against their own chain.
- **Who is in sync.** Only the clients the last completed round's sum went
  to (its contributors; in bfv-masked the clients that unmasked) can hold the
  current model; later cohorts are drawn from them. A client that misses a
  round's sum stays out from then on: its model can be recovered only from a
  peer, which is not built.
- **Durable state** is this round counter, the lineage and that set, in
  ``he-state.json`` (written atomically before the attempt is marked
  completed, as SecAgg's checkpoint is). The record of each round keeps the
  bytes, survivors, phase times and, as ``total_sha256``, the digest of the
  encrypted sum; there is no weight sum (it is encrypted).

TenSEAL is imported only when an HE config is built, so SecAgg deployments
never load it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aggregator.durable import replace_file
from protocol.he_messages import HEConfig, HEMaskedConfig
from protocol.he_model import next_lineage, sum_digest
from secagg.errors import ParameterError

STATE_FILE = "he-state.json"
#: The gRPC message cap (aggregator.server.MAX_MESSAGE): the encrypted sum travels in one.
WIRE_LIMIT = 16 * 1024 * 1024
#: Room for the protobuf framing around the ciphertexts.
WIRE_SLACK = 64 * 1024
#: The key holder's delivery carries one sealed secret context (≈ 233 KB) per member.
MAX_COHORT = 64


def max_dim() -> int:
    """The largest model whose encrypted sum (two polynomials per ciphertext) fits one message."""
    from secagg import he

    params = he.CKKS_8192
    per_ciphertext = he.blob_bounds(params, fresh=False)[1]
    ciphertexts = (WIRE_LIMIT - WIRE_SLACK) // per_ciphertext
    return int(ciphertexts * params.values_per_ciphertext - 1)  # one slot holds the weight


def check_dim(dim: int) -> None:
    """Refuse, at start-up, a model whose encrypted sum cannot be delivered."""
    limit = max_dim()
    if dim > limit:
        raise ParameterError(
            f'mode = "ckks" carries models of at most {limit} values (the encrypted sum '
            f"travels in one {WIRE_LIMIT >> 20} MiB message); dim = {dim}"
        )


@dataclass(frozen=True)
class HEState:
    """What survives a restart: rounds completed, the lineage, who holds the current model."""

    round: int
    lineage: bytes
    in_sync: tuple[int, ...] | None  # None: round 0, everyone starts from θ₀

    def after(self, round_: int, blobs: Iterable[bytes], contributors: Iterable[int]) -> HEState:
        """The state once round ``round_``'s sum (``blobs``) went to ``contributors``."""
        digest = sum_digest(tuple(blobs))
        return HEState(round_ + 1, next_lineage(self.lineage, round_, digest), tuple(contributors))


def load_state(state_dir: Path, initial_hash: bytes) -> HEState:
    """The stored state, or round 0 with θ₀'s hash as the lineage."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return HEState(0, initial_hash, None)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        in_sync = data["in_sync"]
        state = HEState(
            int(data["round"]),
            bytes.fromhex(data["lineage"]),
            None if in_sync is None else tuple(int(c) for c in in_sync),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ParameterError(f"{path} is unreadable: {exc}") from exc
    if len(state.lineage) != 32 or state.round < 0:
        raise ParameterError(f"{path} holds an invalid lineage or round")
    return state


def save_state(state_dir: Path, state: HEState) -> None:
    """Write the state atomically (:func:`aggregator.durable.replace_file`)."""
    data = {
        "round": state.round,
        "lineage": state.lineage.hex(),
        "in_sync": None if state.in_sync is None else list(state.in_sync),
    }
    replace_file(state_dir / STATE_FILE, json.dumps(data).encode())


def cohort(present: Iterable[int], state: HEState) -> tuple[int, ...]:
    """Present clients that hold the current model, lowest ids first, at most MAX_COHORT."""
    eligible = sorted(c for c in present if state.in_sync is None or c in state.in_sync)
    return tuple(eligible[:MAX_COHORT])


def eligible(state: HEState, roster: int) -> int:
    """How many clients could take part at most: the in-sync ones, capped at MAX_COHORT."""
    return min(roster if state.in_sync is None else len(state.in_sync), MAX_COHORT)


def make_config(
    *,
    round_: int,
    clients: tuple[int, ...],
    dim: int,
    clip: float,
    max_weight: int,
    learning_rate: float,
    nonce: bytes,
    lineage: bytes,
) -> HEConfig:
    """The round's CKKS config; the lowest id holds the key (any member would do)."""
    if not math.isfinite(clip) or clip <= 0:
        raise ParameterError("clip must be finite and positive")
    return HEConfig(
        round=round_,
        clients=clients,
        dim=dim,
        scheme="ckks",
        key_holder=clients[0],
        clip=clip,
        max_weight=max_weight,
        levels=2,  # BFV's quantisation; unused by CKKS
        nonce=nonce,
        model_hash=lineage,
        learning_rate=learning_rate,
    )


# ---------------------------------------------------------------- bfv-masked

#: A masked upload's framing: a length per ciphertext and the signature, the signature itself.
_UPLOAD_FRAMING = 1024


def max_masked_dim() -> int:
    """The largest model whose encrypted BFV sum (two polynomials a ciphertext) fits one message."""
    from secagg import he

    params = he.BFV_8192
    per_ciphertext = he.blob_bounds(params, fresh=False)[1]
    ciphertexts = (WIRE_LIMIT - WIRE_SLACK) // per_ciphertext
    return int(ciphertexts * params.values_per_ciphertext - 1)  # one slot holds the weight


def masked_upload_cap(vector_dim: int) -> int:
    """Bytes a bfv-masked MaskedInput may hold: its fresh ciphertexts and their framing."""
    from secagg import he

    params = he.BFV_8192
    chunks = he.chunk_count(params, vector_dim + 1)
    return chunks * (he.blob_bounds(params, fresh=True)[1] + 8) + _UPLOAD_FRAMING


class MaskedSettings(Protocol):
    """What :func:`check_masked` reads (:class:`aggregator.settings.AggregatorSettings` has
    it; named here, not imported, as the settings import this module to check them)."""

    @property
    def profile(self) -> str: ...
    @property
    def degree(self) -> int: ...
    @property
    def method(self) -> str: ...
    @property
    def dp_noise_multiplier(self) -> float: ...
    @property
    def vector_dim(self) -> int: ...
    @property
    def clip(self) -> float: ...
    @property
    def levels(self) -> int: ...
    @property
    def max_weight(self) -> int: ...
    @property
    def learning_rate(self) -> float: ...


def check_masked(settings: MaskedSettings) -> None:
    """Refuse, at start-up, a bfv-masked deployment that could not run a round.

    The hybrid is SecAgg's active profile on the complete graph with FedAvg;
    its n-client sum must fit BFV's plain modulus t for the largest cohort.
    """
    s = settings
    if s.profile != "active" or s.degree:
        raise ParameterError(
            'mode = "bfv-masked" runs the active profile on the complete graph '
            '(profile = "active", degree = 0)'
        )
    if s.method != "fedavg" or s.dp_noise_multiplier > 0:
        raise ParameterError(
            'mode = "bfv-masked" runs FedAvg without distributed DP (method = "fedavg", '
            "dp_noise_multiplier = 0)"
        )
    limit = max_masked_dim()
    if s.vector_dim > limit:
        raise ParameterError(
            f'mode = "bfv-masked" carries models of at most {limit} values (the encrypted sum '
            f"travels in one {WIRE_LIMIT >> 20} MiB message); dim = {s.vector_dim}"
        )
    if not math.isfinite(s.clip) or s.clip <= 0:
        raise ParameterError("clip must be finite and positive")
    try:  # the largest cohort's config: the n-client sum of (levels − 1)·max_weight fits t
        make_masked_config(
            round_=0,
            clients=tuple(range(1, MAX_COHORT + 1)),
            threshold=MAX_COHORT,
            dim=s.vector_dim,
            clip=s.clip,
            levels=s.levels,
            max_weight=s.max_weight,
            learning_rate=s.learning_rate,
            nonce=bytes(32),
            lineage=bytes(32),
        )
    except ParameterError as exc:
        raise ParameterError(
            f'mode = "bfv-masked" with levels = {s.levels} and max_weight = {s.max_weight}: {exc}'
        ) from exc


def make_masked_config(
    *,
    round_: int,
    clients: tuple[int, ...],
    threshold: int,
    dim: int,
    clip: float,
    levels: int,
    max_weight: int,
    learning_rate: float,
    nonce: bytes,
    lineage: bytes,
) -> HEMaskedConfig:
    """The round's bfv-masked config; the lowest id holds the key (any member would do)."""
    return HEMaskedConfig(
        round=round_,
        clients=clients,
        threshold=threshold,
        dim=dim,
        key_holder=clients[0],
        clip=clip,
        levels=levels,
        max_weight=max_weight,
        nonce=nonce,
        model_hash=lineage,
        learning_rate=learning_rate,
    )
