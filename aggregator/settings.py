"""Typed aggregator configuration, read from TOML (see examples/aggregator.toml)."""

from __future__ import annotations

import math
import tomllib
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from aggregator.method_state import check_settings
from protocol.config import PROFILES, Profile
from protocol.method_messages import extra_dim
from protocol.modes import names as mode_names
from secagg.errors import ParameterError

#: The service's modes, from the registry ("secagg" with a degree runs SecAgg+, with
#: profile = "plain" the plain baseline).
MODES = mode_names("service")
MAX_DIM = 1 << 27  # 134M coordinates: a masked vector of 1 GiB; far beyond any face model
MAX_TIMEOUT_S = 7 * 86400.0  # larger waits overflow the threading primitives
MAX_WORKERS = 4096

#: Inclusive ranges of every numeric setting: (low, high, low_exclusive).
RANGES: dict[str, tuple[float, float, bool]] = {
    "rounds": (1, 1 << 31, False),
    "dim": (1, MAX_DIM, False),
    "min_clients": (0, 1 << 20, False),
    "threshold": (0, 1 << 20, False),
    "degree": (0, 1 << 20, False),
    "clip": (0, 1e6, True),
    "levels": (2, 1 << 31, False),
    "max_weight": (1, 1 << 31, False),
    "learning_rate": (0, 1e6, True),
    "phase_timeout_s": (0, MAX_TIMEOUT_S, True),
    "dp_noise_multiplier": (0, 1e6, False),
    "dp_clip": (0, 1e6, True),
    "dp_colluders": (-1, 1 << 20, False),
    "embedding_dim": (0, 1 << 16, False),
    "dplc_clusters": (0, 1 << 16, False),
    "train_timeout_s": (0, MAX_TIMEOUT_S, False),
    "start_timeout_s": (0, MAX_TIMEOUT_S, False),
    "join_window_s": (0, MAX_TIMEOUT_S, False),
    "retry_delay_s": (0, MAX_TIMEOUT_S, False),
    "poll_wait_s": (0, 3600.0, True),
    "max_workers": (1, MAX_WORKERS, False),
    "rate_limit_per_s": (0, 1e9, False),
    "rate_limit_burst": (0, 1 << 31, False),
    "max_inflight_per_client": (0, MAX_WORKERS, False),
    "upload_bytes_per_s": (0, 1e15, False),
    "stream_idle_timeout_s": (0, MAX_TIMEOUT_S, False),
    "stream_timeout_s": (0, MAX_TIMEOUT_S, False),
    "max_uploads_per_client": (0, MAX_WORKERS, False),
    "max_uploads": (0, MAX_WORKERS, False),
    "malloc_arenas": (0, 1024, False),
    "keep_rounds": (0, 1 << 31, False),
    "keep_checkpoints": (0, 1 << 31, False),
}


def _kind(name: str, value: object, hint: object) -> str | None:
    """Why ``value`` is not of the declared type ``hint``, or None. Strict: no coercion.

    TOML has real booleans and numbers, so a string "false" for a bool, a bool
    for a number (Python's bool is an int) or a float for an int is a mistake
    to refuse, never to reinterpret (``insecure = "false"`` is truthy).
    """
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        return None if value in allowed and isinstance(value, str) else f"one of {allowed}"
    if hint is bool:
        return None if type(value) is bool else "true or false"
    if hint is int:
        return None if type(value) is int else "an integer"
    if hint is float:
        if type(value) not in (int, float):
            return "a number"
        return None if math.isfinite(float(value)) else "a finite number"  # type: ignore[arg-type]
    if hint is str:
        return None if type(value) is str else "a string"
    raise AssertionError(f"no type rule for setting {name}: {hint}")


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _check_address(name: str, value: str, *, optional: bool) -> None:
    """``host:port`` with a port in 0–65535 (0 picks a free one); "" only when optional."""
    if optional and value == "":
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ParameterError(f"setting {name} = {value!r}: must be host:port with port 0–65535")


@dataclass(frozen=True)
class AggregatorSettings:
    """Everything `secagg aggregator serve` needs; unknown keys are errors."""

    listen: str = "127.0.0.1:50051"
    pki_dir: str = ""
    insecure: bool = False
    state_dir: str = "aggregator-state"
    rounds: int = 5
    dim: int = 1000
    # A float32 .npy of `dim` values to start from (e.g. a face backbone's seeded
    # initialisation, `secagg demo` writes one); "" = zeros.
    initial_model: str = ""
    min_clients: int = 0  # 0: every client on the roster
    threshold: int = 0  # 0: the default client policy's safe minimum
    degree: int = 0  # 0: complete graph (SecAgg); else SecAgg+ neighbours
    profile: Profile = "active"
    # "secagg": masked rounds (profile, degree); "ckks": homomorphic rounds in which the
    # aggregator only sums ciphertexts, never holds a key or the aggregate, serves the
    # initial model only and leaves the model to the clients (aggregator/he_rounds.py).
    # ckks needs the PKI's signing keys (pki_dir, also with insecure = true).
    # "bfv-masked": the same with SecAgg's masks inside BFV plaintexts (protocol/he_masked.py),
    # so a client holding the key cannot read another's upload; active profile, complete
    # graph, FedAvg, pki_dir required.
    mode: Literal["secagg", "ckks", "bfv-masked"] = "secagg"
    clip: float = 1.0
    levels: int = 1 << 16
    max_weight: int = 1
    learning_rate: float = 1.0
    phase_timeout_s: float = 30.0
    # Distributed DP (secagg.dp): clients clip to dp_clip (L2) and add discrete Gaussian
    # noise for a total noise multiplier dp_noise_multiplier carried by the t − n_C honest
    # survivors; 0 = off. Clients must use the same values (they refuse otherwise).
    dp_noise_multiplier: float = 0.0
    dp_clip: float = 1.0
    dp_colluders: int = -1  # n_C in the plan; -1: the protocol's default assumption
    # Face-FL method every daemon must run (docs/client-daemon.md, aggregator/method_state.py):
    # "fedavg" | "projector" | "fedface" | "fedgc" | "privacyface". fedface appends
    # embedding_dim² values (S_k/n_k) to each masked vector (`dim` stays the model's size);
    # fedgc and privacyface take one DP cluster release per client per round (at most
    # dplc_clusters clusters of embedding_dim) and broadcast them with the next RoundStart
    # (HEStart in ckks mode, where each client recovers FedFace's S from its decrypted sum).
    method: str = "fedavg"
    embedding_dim: int = 0
    dplc_clusters: int = 4
    # The first phase's deadline: clients train locally before they answer it.
    # 0 = phase_timeout_s.
    train_timeout_s: float = 0.0
    start_timeout_s: float = 60.0
    # After a round, wait this long for late clients, then start with every live client
    # (those polling; a client that dropped out is not waited for until it polls again).
    join_window_s: float = 3.0
    retry_delay_s: float = 2.0  # after an aborted attempt, before the next one
    poll_wait_s: float = 5.0
    max_workers: int = 64
    # Per-client admission (X9, aggregator/ratelimit.py): a token bucket of
    # rate_limit_burst calls refilled at rate_limit_per_s, and at most
    # max_inflight_per_client calls open at once; excess calls get RESOURCE_EXHAUSTED
    # (clients back off and retry). An honest daemon makes one call at a time, about 12
    # per round: at most 120 in any second (61/s on average) in the fastest rounds
    # measured (N=3, D=16, 5 rounds/s on 2 cores), below the defaults. 0 turns a limit off.
    rate_limit_per_s: float = 200.0
    rate_limit_burst: int = 400
    max_inflight_per_client: int = 8
    # Per-client upload volume: a token bucket of bytes refilled at this rate, holding two of
    # the largest uploads `dim` allows; an Upload is charged its declared length on its first
    # chunk, before anything is spooled. An honest daemon uploads one masked vector a round.
    upload_bytes_per_s: float = 64.0 * 1024 * 1024
    # Streams (aggregator/streams.py): an Upload that sends no chunk, or a GetModel whose
    # client takes no chunk, for stream_idle_timeout_s, or either open longer than
    # stream_timeout_s, is cut (the server cancels it); at most max_uploads_per_client
    # Uploads are open per identity (an honest daemon has one) and max_uploads in total
    # (0: half of max_workers), so stalled streams can never hold every worker.
    # 0 turns a limit off.
    stream_idle_timeout_s: float = 10.0
    stream_timeout_s: float = 300.0
    max_uploads_per_client: int = 2
    max_uploads: int = 0
    # Development only: with insecure = true, listen on a non-loopback address anyway.
    allow_insecure_remote: bool = False
    # glibc malloc arenas for the whole aggregator process (M_ARENA_MAX); 0 = glibc's default
    # (8 per core). Every worker thread that allocates a chunk-sized buffer otherwise keeps
    # its own arena's freed megabytes: measured at N=8, D=1e6, RSS 350 MB and +24 % once a
    # flood wakes all workers, against 250 MB and flat with 2 (tests/integration/test_flood.py).
    malloc_arenas: int = 2
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"  # FULL: survive power loss too
    # Retention (aggregator/store.py, after each completed round): message bodies of rounds
    # more than keep_rounds completed rounds old are deleted (event rows, digests and nonces
    # stay), and only the newest keep_checkpoints model files are kept; 0 keeps everything.
    keep_rounds: int = 10
    keep_checkpoints: int = 5
    operator_listen: str = ""  # e.g. "127.0.0.1:9464": /metrics and /status over HTTP; "" = off

    def __post_init__(self) -> None:
        self._check_types_and_ranges()
        if self.profile not in PROFILES:
            raise ParameterError(f"profile must be one of {PROFILES}")
        if self.mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}")
        if self.mode == "ckks":
            if not self.pki_dir:
                raise ParameterError('mode = "ckks" needs pki_dir: HE rounds are signed')
            from aggregator.he_rounds import check_dim  # loads TenSEAL: ckks mode only

            check_dim(self.vector_dim)  # the model and a method's extras (FedFace's S_k/n_k)
        if self.mode == "bfv-masked":
            if not self.pki_dir:
                raise ParameterError('mode = "bfv-masked" needs pki_dir: its rounds are signed')
            from aggregator.he_rounds import check_masked  # loads TenSEAL: this mode only

            check_masked(self)
        if self.rounds < 1 or self.dim < 1:
            raise ParameterError("rounds and dim must be positive")
        if not self.insecure and not self.pki_dir:
            raise ParameterError("pki_dir is required unless insecure = true (development only)")
        if self.dp_noise_multiplier < 0 or self.dp_clip <= 0:
            raise ParameterError("dp_noise_multiplier must be ≥ 0 and dp_clip positive")
        if self.dp_noise_multiplier > 0 and self.profile == "plain":
            raise ParameterError("distributed DP needs a masked profile (active or semi-honest)")
        check_settings(self)
        if self.synchronous not in ("NORMAL", "FULL"):
            raise ParameterError("synchronous must be NORMAL or FULL")
        if self.phase_timeout_s <= 0 or self.poll_wait_s <= 0 or self.train_timeout_s < 0:
            raise ParameterError("timeouts must be positive")
        if (
            min(
                self.rate_limit_per_s,
                self.rate_limit_burst,
                self.max_inflight_per_client,
                self.upload_bytes_per_s,
            )
            < 0
        ):
            raise ParameterError("rate limits must be non-negative (0 turns one off)")
        if self.keep_rounds < 0 or self.keep_checkpoints < 0:
            raise ParameterError("keep_rounds and keep_checkpoints must be ≥ 0 (0 keeps all)")
        if self.malloc_arenas < 0:
            raise ParameterError("malloc_arenas must be ≥ 0 (0 keeps glibc's default)")

    def _check_types_and_ranges(self) -> None:
        """Every setting of its declared type, finite and in its range; one key per message."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            want = _kind(f.name, value, hints[f.name])
            if want is not None:
                raise ParameterError(f"setting {f.name} = {value!r}: must be {want}")
            if f.name in RANGES:
                low, high, open_low = RANGES[f.name]
                if value < low or value > high or (open_low and value == low):
                    bound = f"> {_num(low)}" if open_low else f"≥ {_num(low)}"
                    raise ParameterError(
                        f"setting {f.name} = {value!r}: must be {bound} and ≤ {_num(high)}"
                    )
        _check_address("listen", self.listen, optional=False)
        _check_address("operator_listen", self.operator_listen, optional=True)
        if self.rate_limit_per_s > 0 and self.rate_limit_burst < 1:
            raise ParameterError(
                "setting rate_limit_burst: must be ≥ 1 while rate_limit_per_s is set"
            )
        if self.degree and (self.degree < 2 or self.degree % 2):
            raise ParameterError(
                f"setting degree = {self.degree}: 0 (complete graph) or an even number ≥ 2 "
                "(clients refuse any other SecAgg+ degree)"
            )
        if self.max_uploads > self.max_workers:
            raise ParameterError(
                f"setting max_uploads = {self.max_uploads}: above max_workers = "
                f"{self.max_workers}, stalled uploads could hold every worker"
            )
        if self.allow_insecure_remote and not self.insecure:
            raise ParameterError("setting allow_insecure_remote: only applies with insecure = true")

    @property
    def vector_dim(self) -> int:
        """Coordinates of a masked vector: the model's ``dim`` plus a method's (FedFace's S_k)."""
        return self.dim + extra_dim(self.method, self.embedding_dim)


def load_settings(path: str | Path, **overrides: Any) -> AggregatorSettings:
    """Read ``[aggregator]`` from a TOML file; keyword overrides win."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ParameterError(f"cannot read the config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"config {path} is not valid TOML: {exc}") from None
    section = data.get("aggregator", data)
    if not isinstance(section, dict):
        raise ParameterError(f"config {path}: [aggregator] must be a table")
    known = {f.name for f in fields(AggregatorSettings)}
    unknown = set(section) - known
    if unknown:
        raise ParameterError(f"unknown aggregator settings: {sorted(unknown)}")
    base = Path(path).parent
    merged = {**section, **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("pki_dir", "state_dir", "initial_model"):
        if merged.get(key) and not Path(merged[key]).is_absolute():
            merged[key] = str(base / merged[key])
    return AggregatorSettings(**merged)
