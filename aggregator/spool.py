"""Uploads spooled to disk while they stream in, so memory is bounded by the chunk size.

ARCHITECTURE.md: "memory on the aggregator is bounded by chunk size x
concurrent uploads plus one accumulator". Each Upload writes its chunks to
its own temporary file as they arrive, hashing on the way; once the stream
is complete and checked, the coordinator sums the file into the accumulator
and copies it into the event log slice by slice
(:meth:`protocol.server.ServerMachine.receive_masked`,
:meth:`aggregator.store.Store.log_stream`), and the file is deleted.

The spool is scratch space, not durable state: nothing in it was
acknowledged, so :func:`clear` empties it at start-up.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import TracebackType

SUFFIX = ".upload"


class SpooledPayload:
    """One upload's bytes in a temporary file in ``directory`` (None: the system's).

    Satisfies ``protocol.server.PayloadSource`` and ``aggregator.store.Readable``.
    """

    def __init__(self, directory: Path | None) -> None:
        fd, name = tempfile.mkstemp(dir=directory, suffix=SUFFIX)
        self.path = Path(name)
        self._fd = fd
        self._hash = hashlib.sha256()
        self._length = 0

    def __enter__(self) -> SpooledPayload:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def length(self) -> int:
        """Bytes written so far."""
        return self._length

    @property
    def sha256(self) -> bytes:
        """SHA-256 of the bytes written so far."""
        return self._hash.digest()

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._hash.update(data)
        self._length += len(data)

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset`` (fewer only past the end)."""
        out = bytearray()
        while len(out) < size:
            piece = os.pread(self._fd, size - len(out), offset + len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

    def close(self) -> None:
        """Delete the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.path.unlink(missing_ok=True)


def clear(directory: Path) -> None:
    """Create ``directory`` if needed and remove uploads a crash left behind."""
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(f"*{SUFFIX}"):
        leftover.unlink(missing_ok=True)
