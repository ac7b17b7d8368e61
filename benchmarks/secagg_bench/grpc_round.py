"""`secagg bench round`: full rounds over real gRPC with N daemon processes.

Training is excluded (the synthetic trainer costs microseconds); the wall
time covers model download, masking, uploads, every protocol phase and the
server step. The modes run one after another in one call, so their ratio is
measured in one run. ``ckks`` rounds cover the key ceremony, encryption, the
ciphertext sum and every client's decryption (the aggregator ends its round
when it sends the sum; the clients' decryption and step overlap the next
round's start). ``bfv-masked`` rounds add SecAgg's masks inside the BFV
plaintexts, Shamir unmasking and the mask correction under encryption.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from clients.lab.cluster import LocalCluster
from protocol.build import make_config
from protocol.config import MIN_HONEST
from protocol.modes import names
from protocol.params import find_parameters
from secagg.errors import ParameterError

MODES = names("bench-round")


def _settings(mode: str, clients: int, dim: int, rounds: int) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rounds": rounds,
        "dim": dim,
        "phase_timeout_s": 120.0,
        "start_timeout_s": 60.0,
        "poll_wait_s": 1.0,
    }
    if mode == "plain":
        return {**base, "profile": "plain"}
    if mode == "secagg":
        return {**base, "profile": "active"}
    if mode == "secagg+":
        graph = secaggplus_graph(clients)
        if graph is None:
            return {**base, "profile": "active"}
        return {**base, "profile": "active", "degree": graph[0], "threshold": graph[1]}
    if mode == "ckks":  # homomorphic rounds: the aggregator sums CKKS ciphertexts
        return {**base, "mode": "ckks"}
    if mode == "bfv-masked":  # the hybrid: SecAgg's masks inside BFV plaintexts
        return {**base, "mode": "bfv-masked"}
    raise ParameterError(f"mode {mode!r} is not built (available: {', '.join(MODES)})")


def secaggplus_graph(clients: int) -> tuple[int, int] | None:
    """(degree, threshold) of the SecAgg+ graph for ``clients``, or None for a complete graph.

    5% adversarial and 5% dropout rates; a neighbourhood too small to hold
    k_min honest inputs and lose any runs the complete graph instead, as FCP's
    finder does for small cohorts.
    """
    params = find_parameters(clients, adversarial_rate=0.05, dropout_rate=0.05)
    if params.complete or params.k + 1 < 2 * MIN_HONEST:
        return None
    return params.k, params.t


def run(*, clients: int, dim: int, modes: list[str], rounds: int, out: Path) -> dict[str, Any]:
    """Run every mode; returns one JSON-ready dict with a row per mode."""
    rows = []
    for mode in modes:
        settings = _settings(mode, clients, dim, rounds)
        run_dir = out / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}"
        # Each client states its own policy: the opt-in for plain and CKKS rounds, and
        # for a sparse graph the colluder share the finder planned for (5%).
        client: dict[str, Any] = {"allow_plain": True} if mode == "plain" else {}
        if mode == "ckks":
            client["policy"] = {"modes": ["secagg", "secagg+", "bfv-masked", "ckks"]}
        if "degree" in settings:
            client["colluders"] = clients // 20
        with LocalCluster(run_dir, clients) as cluster:
            cluster.start(settings, client)
            records = cluster.follow(rounds)
            cluster.wait(timeout=300)
        done = [r for r in records if r["completed"]]
        if len(done) < rounds:
            raise RuntimeError(
                f"{mode}: only {len(done)} of {rounds} rounds completed; see {run_dir}"
            )
        walls = [r["wall_s"] for r in done]
        rows.append(
            {
                "mode": mode,
                "profile": settings.get("profile"),  # None: ckks has no masking profile
                "degree": settings.get("degree", clients - 1) if mode != "ckks" else None,
                # The coordinator's default when none is set (make_config holds the rule).
                "threshold": settings.get(
                    "threshold", make_config(clients=clients, dim=1).threshold
                )
                if mode not in ("plain", "ckks")
                else None,
                "round_wall_s_median": statistics.median(walls),
                "round_wall_s_all": walls,
                "bytes_received_per_round": statistics.median(r["bytes_received"] for r in done),
                "bytes_up_per_client": statistics.median(r["bytes_received"] for r in done)
                / clients,
                "run_dir": str(run_dir),
            }
        )
    plain = next((r for r in rows if r["mode"] == "plain"), None)
    if plain is not None:
        for row in rows:
            row["vs_plain"] = row["round_wall_s_median"] / plain["round_wall_s_median"]
    return {"clients": clients, "dim": dim, "rounds": rounds, "modes": rows}
