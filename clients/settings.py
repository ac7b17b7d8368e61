"""Typed client-daemon configuration, read from TOML (see examples/client.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from protocol.pki_layout import PkiPaths
from protocol.policy import ClientPolicy
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
    # This client's security policy (protocol/policy.py), the [client.policy] table:
    # modes, profiles, colluders, min_cohort, min_honest, degrees, max_attempts.
    policy: dict[str, Any] = field(default_factory=dict)
    colluders: int = -1  # n_C; -1: fewer than a third of the roster (same as policy.colluders)
    allow_plain: bool = False  # shorthand for adding "plain" to policy.modes (benchmarks only)
    # Where the contribution ledger lives (the differencing rule). Unset: <pki_dir>/clients/
    # <id>/state, else client-<id>.state beside the config file, else memory only.
    state_dir: str = ""
    # trainer = "face": the [client.training] table (clients/training/face_trainer.py).
    training: dict[str, Any] = field(default_factory=dict)
    # Distributed DP: must equal the aggregator's dp_* values (the daemon refuses a round
    # whose quantiser does not match its own plan); n_C is `colluders`. 0 = off.
    dp_noise_multiplier: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    # The ε (at dp_delta) this client spends on distributed DP in all, kept in
    # <state_dir>/dp-ledger.json across restarts; a round that could exceed it is refused.
    dp_epsilon_budget: float = 10.0
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
        if not self.dp_epsilon_budget > 0:
            raise ParameterError("dp_epsilon_budget must be positive")
        if self.training and self.trainer != "face":
            raise ParameterError('a [client.training] table needs trainer = "face"')
        self.client_policy()  # refuses a bad [client.policy] table at start

    def with_opt_in(self, *names: str) -> ClientSettings:
        """These settings with modes or profiles added to the policy table."""
        policy = ClientPolicy.from_settings(dict(self.policy)).with_opt_in(*names)
        table = {**self.policy, "modes": list(policy.modes), "profiles": list(policy.profiles)}
        return replace(self, policy=table)

    def client_policy(self) -> ClientPolicy:
        """The policy these settings give (the table, then the two shorthands)."""
        values = dict(self.policy)
        if self.colluders >= 0:
            values["colluders"] = self.colluders
        policy = ClientPolicy.from_settings(values)
        return policy.with_opt_in("plain") if self.allow_plain else policy


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
    for key in ("pki_dir", "metrics_file", "dump_updates_dir", "state_dir"):
        if merged.get(key) and not Path(merged[key]).is_absolute():
            merged[key] = str(base / merged[key])
    if not merged.get("state_dir") and merged.get("id"):
        # This client's own folder: in its PKI folder, else beside its config file; with
        # neither (a development run from flags alone) the ledger lives in memory.
        if merged.get("pki_dir"):
            merged["state_dir"] = str(PkiPaths(Path(merged["pki_dir"])).client(merged["id"]).state)
        elif path is not None:
            merged["state_dir"] = str(base / f"client-{merged['id']}.state")
    return ClientSettings(**merged)
