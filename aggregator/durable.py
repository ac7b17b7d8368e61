"""Durable files: atomic replacement, and an exclusive lock on the state folder.

Replacing a file leaves either the old content or the new after a crash,
never a mix; the folder lock keeps a second aggregator off the same state.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

from secagg.errors import ParameterError


def replace_file(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to a temporary sibling, fsync it, rename it over ``path``, fsync the folder.

    The folder's fsync makes the rename itself survive power loss, not just the bytes.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    os.close(fd)
    os.replace(name, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class StateFolderInUse(ParameterError):
    """Another process holds the state folder's lock (a second aggregator on the same state)."""


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/aggregator.lock``, holding the owner's pid.

    Two aggregators on one state folder would both replay and extend the same
    event log (issue 15: round 1 recorded as completed twice). The lock is
    taken before the store is opened and held for the life of the process;
    the kernel releases it when the process dies, even by kill -9, so a stale
    file never blocks a restart. The pid in it is only for the message.
    """

    NAME = "aggregator.lock"

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / self.NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateFolderInUse(
                f"state folder {folder} is in use by another aggregator (pid {holder}; "
                f"lock file {self.path}): stop it, or give this one its own state_dir"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlock (the file stays: removing it could race a newcomer's lock)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
