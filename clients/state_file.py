"""The client's durable records: one JSON document per file, replaced atomically.

Every ledger that guards something leaving the client (the differencing rule,
the DP budgets) must survive a crash or restart, or a restart would reset it.
So a record is written to a temporary file, fsynced, renamed over the old one
and the folder fsynced, *before* the message it allows is sent; and a record
that cannot be read stops the daemon with one line naming the file, never a
silent fresh start that forgets what was spent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from secagg.errors import ParameterError


def write_record(path: Path, doc: dict[str, Any]) -> None:
    """Replace ``path`` with ``doc`` (JSON) atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(doc, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_record(path: Path, what: str, *, version: int = 1) -> dict[str, Any] | None:
    """The document at ``path`` (None when absent); unreadable: ParameterError, one line."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or doc.get("version") != version:
            raise ValueError(f"not a version-{version} record")
    except (OSError, ValueError) as exc:
        # Starting afresh would forget what this client already spent or contributed.
        raise ParameterError(f"{what} {path} is unreadable ({exc}); not starting") from exc
    return doc
