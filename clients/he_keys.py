"""HE key material on disk (security.md T52): owner-only files with recorded fingerprints.

A client daemon that keeps a session's HE context across a restart writes it
here; so does any provisioning step. Rules:

- every file is created with mode 0600 from the first byte (``O_EXCL``, then
  ``fchmod`` so the umask cannot widen it) in a 0700 directory, and fsynced;
  an existing file is never overwritten (a new session gets a new name);
- its SHA-256 goes into ``fingerprints.json`` beside it (also 0600), with
  whether it holds a secret key, so an operator can compare bundles without
  opening them and a reader detects a swapped or corrupted file;
- reading refuses symlinks, files readable by group or others, and any file
  whose digest differs from the recorded one.

Public contexts (the aggregator's bundle) follow the same rules: they are not
secret, but the fingerprint lets clients check the server sums under the
context the key holder made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from secagg import he
from secagg.errors import ParameterError

FINGERPRINTS = "fingerprints.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class InsecureKeyFile(ParameterError):
    """A key file is missing, too widely readable, a symlink, or not what was recorded."""


@dataclass(frozen=True, slots=True)
class KeyFile:
    """One written key file and its SHA-256 (hex)."""

    path: Path
    sha256: str
    secret: bool


def write_key_file(directory: Path, name: str, data: bytes, *, secret: bool) -> KeyFile:
    """Create ``directory/name`` (mode 0600) holding ``data``; record its fingerprint."""
    if not _NAME.match(name) or name == FINGERPRINTS:
        raise ParameterError(f"bad key file name {name!r}")
    if not data:
        raise ParameterError("refusing to write an empty key file")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private_dir(directory)
    path = directory / name
    try:
        _write_new(path, data)
    except FileExistsError:
        raise ParameterError(f"{path} exists; key files are never overwritten") from None
    digest = hashlib.sha256(data).hexdigest()
    records = _records(directory)
    records[name] = {"sha256": digest, "secret": secret, "bytes": len(data)}
    _replace(directory / FINGERPRINTS, json.dumps(records, indent=2, sort_keys=True).encode())
    return KeyFile(path, digest, secret)


def read_key_file(directory: Path, name: str) -> bytes:
    """The bytes of ``directory/name``, after the mode, symlink and fingerprint checks."""
    path = directory / name
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise InsecureKeyFile(f"{path} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise InsecureKeyFile(f"{path} is not a regular file (a symlink?)")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureKeyFile(
            f"{path} is accessible to other users (mode {info.st_mode & 0o777:o}); chmod 600 it"
        )
    data = path.read_bytes()
    record = _records(directory).get(name)
    if record is None or record.get("sha256") != hashlib.sha256(data).hexdigest():
        raise InsecureKeyFile(f"{path} does not match its recorded SHA-256 fingerprint")
    return data


def fingerprints(directory: Path) -> dict[str, str]:
    """name → SHA-256 of every key file recorded in ``directory``."""
    return {name: str(r["sha256"]) for name, r in _records(directory).items()}


def save_contexts(directory: Path, ctx: he.HEContext, *, tag: str) -> tuple[KeyFile, KeyFile]:
    """A key holder's pair: ``<tag>.secret.ctx`` (clients only) and ``<tag>.public.ctx``."""
    secret = write_key_file(directory, f"{tag}.secret.ctx", he.secret_bytes(ctx), secret=True)
    public = write_key_file(directory, f"{tag}.public.ctx", he.public_bytes(ctx), secret=False)
    return secret, public


def load_secret_context(directory: Path, tag: str, params: he.HEParams) -> he.HEContext:
    """A client's context back from disk (checked file, then checked parameters)."""
    return he.load_secret(read_key_file(directory, f"{tag}.secret.ctx"), params)


def load_public_context(directory: Path, tag: str, params: he.HEParams) -> he.HEContext:
    """The aggregator's context back from disk; refuses one that carries a secret key."""
    return he.load_public(read_key_file(directory, f"{tag}.public.ctx"), params)


# ---------------------------------------------------------------- helpers


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only narrow the mode; make it exact anyway
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with a 0600 file holding ``data``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    _write_new(tmp, data)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _records(directory: Path) -> dict[str, dict[str, object]]:
    path = directory / FINGERPRINTS
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InsecureKeyFile(f"{path} is not a fingerprint record") from exc
    if not isinstance(records, dict):
        raise InsecureKeyFile(f"{path} is not a fingerprint record")
    return records


def _check_private_dir(directory: Path) -> None:
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise InsecureKeyFile(f"{directory} is not a directory")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InsecureKeyFile(f"{directory} is writable by other users; chmod 700 it")
