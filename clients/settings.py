"""Typed client-daemon configuration, read from TOML (see examples/client.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from secagg.errors import ParameterError


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

    def __post_init__(self) -> None:
        if self.id < 1:
            raise ParameterError("client id must be a positive roster id")
        if not self.insecure and not self.pki_dir:
            raise ParameterError("pki_dir is required unless insecure = true (development only)")
        if self.trainer != "synthetic":
            raise ParameterError(f"unknown trainer {self.trainer!r} (available: synthetic)")


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
    if merged.get("pki_dir") and not Path(merged["pki_dir"]).is_absolute():
        merged["pki_dir"] = str(base / merged["pki_dir"])
    return ClientSettings(**merged)
