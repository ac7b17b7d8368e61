"""Peer rows for `secagg bench suite --peers`: Flower SecAgg+ and NVIDIA FLARE HE.

The harnesses live in ``benchmarks/peers/`` and need their own virtual
environment (flwr, nvflare, tenseal; ``make peers`` builds ``.peers-venv``
from requirements/peers.txt); we run them as subprocesses, one per cell, and
translate their JSON line into a suite row. Mapping: our ``secagg`` mode
against Flower's complete graph, ``secagg+`` against Flower's sparse graph
(its own degree, about 2·log2 N), ``ckks`` against NVIDIA FLARE's HE path.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The harnesses' folder and the venv `make peers` builds, both relative to a checkout.
PEERS_SUBDIR = Path("benchmarks") / "peers"
PEERS_VENV = Path(".peers-venv")


def checkout_root(cwd: Path | None = None) -> Path:
    """The checkout the harnesses belong to.

    This file's own checkout when secagg_bench is installed editable (``make
    venv``); otherwise (a wheel in site-packages) the working directory, as
    `make` and the CLI are run from the repo root.
    """
    here = Path(__file__).resolve().parents[2]
    if (here / PEERS_SUBDIR).is_dir():
        return here
    return (cwd or Path.cwd()).resolve()


DEFAULT_PEERS_DIR = checkout_root() / PEERS_SUBDIR
DEFAULT_PEERS_PYTHON = checkout_root() / PEERS_VENV / "bin" / "python"

#: Our mode → (peer system, harness script, extra arguments).
PEER_OF_MODE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "secagg": ("flower", "flower_secaggplus_bench.py", ("--graph", "full")),
    "secagg+": ("flower", "flower_secaggplus_bench.py", ("--graph", "sparse")),
    "ckks": ("nvflare", "nvflare_he_bench.py", ()),
}


@dataclass(frozen=True)
class PeerEnv:
    """The peers' interpreter and scripts; ``missing`` says why they cannot run."""

    python: Path
    scripts: Path

    @property
    def missing(self) -> str | None:
        """None when both exist, else a one-line reason."""
        if not self.scripts.is_dir():
            return f"peer harnesses not found at {self.scripts}"
        if not (self.python.is_file() and os.access(self.python, os.X_OK)):
            return (
                f"peer environment absent ({self.python} not found): run `make peers` "
                "to build it, or pass --peers-python"
            )
        return None


def flower_graph(clients: int, mode: str) -> tuple[int, int]:
    """(degree without self, threshold) Flower's workflow uses by default (for estimates).

    This is the peer's formula (about 2·log2 N shares), reproduced to estimate
    Flower's cost; it is deliberately not ours (:func:`protocol.graph.densest_harary_degree`).
    """
    if mode == "secagg":
        shares = clients
    else:
        shares = min(clients, 2 * math.ceil(math.log2(max(clients, 2))) + 1)
        if shares != clients and shares % 2 == 0:
            shares += 1
    return shares - 1, max(2, shares // 2 + 1)


def command(
    env: PeerEnv, mode: str, clients: int, dim: int, *, dropout: float, distinct: int
) -> list[str]:
    """The harness command line for one cell."""
    _, script, extra = PEER_OF_MODE[mode]
    args = [str(env.python), str(env.scripts / script), "--d", str(dim), "--N", str(clients)]
    if script.startswith("flower"):
        return [*args, *extra, "--dropout", str(dropout)]
    return [*args, "--distinct", str(distinct)]


def run_cell(
    env: PeerEnv,
    mode: str,
    clients: int,
    dim: int,
    *,
    dropout: float,
    distinct: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Run one harness configuration; returns the suite fields and the raw JSON line.

    Raises RuntimeError (with the harness's last stderr lines) when it fails
    or times out.
    """
    argv = command(env, mode, clients, dim, dropout=dropout, distinct=distinct)
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"},
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"peer harness timed out after {timeout_s:.0f} s") from exc
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"peer harness exited {done.returncode}: {tail[-400:]}")
    raw: dict[str, Any] = json.loads(lines[-1])
    return {"fields": translate(mode, raw, dim), "raw": raw, "argv": argv}


def translate(mode: str, raw: dict[str, Any], dim: int) -> dict[str, Any]:
    """A harness's JSON line → the suite's measured fields."""
    system = PEER_OF_MODE[mode][0]
    if system == "flower":
        up = float(raw["bytes_up_total_per_client"])
        return {
            "system": system,
            "degree": raw.get("k"),
            "threshold": raw.get("threshold"),
            "dropout": raw.get("dropouts", 0) / max(1, int(raw["N"])),
            "client_s": raw["client_mask_s"],
            "server_s": raw["server_total_s"],
            "decrypt_s": None,
            "bytes_up_per_client": up,
            "max_abs_error": raw.get("max_abs_err"),
            "method": f"{PEER_OF_MODE[mode][1]} (flwr {raw.get('version')}, stages, "
            f"{raw.get('graph')} graph)",
        }
    up = float(raw["bytes_per_client"])
    return {
        "system": system,
        "degree": None,
        "threshold": None,
        "dropout": 0.0,
        "client_s": raw["encrypt_s"],
        "server_s": raw["aggregate_s"],
        "decrypt_s": raw.get("decrypt_s"),
        "bytes_up_per_client": up,
        "max_abs_error": raw.get("max_abs_err"),
        "method": f"nvflare_he_bench.py (nvflare {raw.get('nvflare_version')}, "
        f"{raw.get('impl')}, {raw.get('distinct_encryptions')} distinct encryptions)",
    }
