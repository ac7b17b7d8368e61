"""The client's contribution ledger: the differencing rule, kept on the client's own disk.

A server that sums clients {1..7} and then {2..7} over the same model learns
client 1's update as the difference. So a client contributes at most once per
base model (the model hash a round announces, which also binds the method
state), and joins at most ``max_attempts`` round attempts per model, which
bounds how often a server can restart a round to re-draw a SecAgg+ graph.

Both facts are written durably *before* the message they allow leaves the
client (an attempt before the advertised keys, a contribution before the
masked input), so a crash or restart cannot reset them. The cost to an honest
deployment: a round that aborts after this client's masked input was sent is
not retried with this client on the same model; it rejoins once the model
moves on (docs/client-daemon.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from secagg.errors import ParameterError

LEDGER_FILE = "contributions.json"


@dataclass
class _Entry:
    attempts: list[str] = field(default_factory=list)  # round nonces joined (hex)
    contributed: bool = False


class ContributionLedger:
    """Per base model: the round attempts joined and whether a masked input was sent.

    ``folder`` None keeps the ledger in memory (tests, in-process labs).
    """

    def __init__(self, folder: Path | None = None) -> None:
        self._path = None if folder is None else Path(folder) / LEDGER_FILE
        self._models: dict[str, _Entry] = {}
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self._path.exists():
                self._models = _load(self._path)

    def admit(self, model_hash: bytes, nonce: bytes, *, max_attempts: int) -> str | None:
        """Record an attempt at a round on ``model_hash``; the reason to refuse it, or None."""
        entry = self._models.setdefault(model_hash.hex(), _Entry())
        if entry.contributed:
            return "this client already contributed to a round on this model (differencing rule)"
        if nonce.hex() in entry.attempts:
            return None  # the same attempt announced again: nothing new to record
        if len(entry.attempts) >= max_attempts:
            return f"already joined {len(entry.attempts)} round attempts on this model"
        entry.attempts.append(nonce.hex())
        self._save()
        return None

    def contribute(self, model_hash: bytes) -> None:
        """Record, durably, that a masked input on ``model_hash`` is about to leave."""
        self._models.setdefault(model_hash.hex(), _Entry()).contributed = True
        self._save()

    def contributed(self, model_hash: bytes) -> bool:
        """Whether this client has contributed to a round on ``model_hash``."""
        entry = self._models.get(model_hash.hex())
        return entry is not None and entry.contributed

    def _save(self) -> None:
        if self._path is None:
            return
        data = {
            k: {"attempts": e.attempts, "contributed": e.contributed}
            for k, e in self._models.items()
        }
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump({"version": 1, "models": data}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
        folder = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _load(path: Path) -> dict[str, _Entry]:
    try:
        doc = json.loads(path.read_text())
        models = doc["models"]
        return {
            str(k): _Entry([str(n) for n in v["attempts"]], bool(v["contributed"]))
            for k, v in models.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # Starting afresh would forget what this client already contributed.
        raise ParameterError(
            f"contribution ledger {path} is unreadable ({exc}); not starting"
        ) from exc
