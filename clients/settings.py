"""Typed client-daemon configuration, read from TOML (see examples/client.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from secagg.errors import ParameterError

TRAINERS = ("synthetic", "face")


@dataclass(frozen=True)
class ClientSettings:
    """Everything `secagg client run` needs; unknown keys are errors."""

    id: int = 0
    aggregator: str = "127.0.0.1:50051"
    pki_dir: str = ""
    insecure: bool = False
    trainer: str = "synthetic"
    exact_levels: bool = False
    weight: int = 1
    poll_timeout_s: float = 30.0
    colluders: int = -1  # -1: the default policy (fewer than a third of the cohort)
    allow_plain: bool = False  # plain rounds send the update in the clear (benchmarks only)
    # trainer = "face": the [client.training] table (clients/training/face_trainer.py).
    training: dict[str, Any] = field(default_factory=dict)
    # Distributed DP: must equal the aggregator's dp_* values (the daemon refuses a round
    # whose quantiser does not match its own plan); n_C is `colluders`. 0 = off.
    dp_noise_multiplier: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    # This client's own per-round figures (loss, train/crypto/network seconds, bytes up)
    # as JSON lines on its own disk; "" = off. Nothing here is sent to the aggregator.
    metrics_file: str = ""
    # Debugging and the demo's parity check only: also write each round's plaintext
    # update to this client's own folder. "" = off.
    dump_updates_dir: str = ""

    def __post_init__(self) -> None:
        if self.id < 1:
            raise ParameterError("client id must be a positive roster id")
        if not self.insecure and not self.pki_dir:
            raise ParameterError("pki_dir is required unless insecure = true (development only)")
        if self.trainer not in TRAINERS:
            raise ParameterError(f"unknown trainer {self.trainer!r} (available: {TRAINERS})")
        if self.dp_noise_multiplier < 0 or self.dp_clip <= 0 or not 0 < self.dp_delta < 1:
            raise ParameterError("dp_noise_multiplier ≥ 0, dp_clip > 0 and 0 < dp_delta < 1")
        if self.training and self.trainer != "face":
            raise ParameterError('a [client.training] table needs trainer = "face"')


def load_client_settings(path: str | Path | None, **overrides: Any) -> ClientSettings:
    """Read ``[client]`` from a TOML file (optional); keyword overrides win."""
    section: dict[str, Any] = {}
    base = Path(".")
    if path is not None:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        section = data.get("client", data)
        base = Path(path).parent
    known = {f.name for f in fields(ClientSettings)}
    unknown = set(section) - known
    if unknown:
        raise ParameterError(f"unknown client settings: {sorted(unknown)}")
    merged = {**section, **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("pki_dir", "metrics_file", "dump_updates_dir"):
        if merged.get(key) and not Path(merged[key]).is_absolute():
            merged[key] = str(base / merged[key])
    return ClientSettings(**merged)
