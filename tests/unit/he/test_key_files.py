"""T52: HE key files are owner-only, fingerprinted, and the server's bundle holds no key."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients.he_keys import (
    FINGERPRINTS,
    InsecureKeyFile,
    fingerprints,
    load_public_context,
    load_secret_context,
    read_key_file,
    save_contexts,
    write_key_file,
)
from secagg import he
from secagg.errors import HEParameterError, ParameterError
from tests.unit.he.conftest import Keys


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable, to prove the code sets 0600 itself."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.usefixtures("open_umask")
def test_provisioning_output(tmp_path: Path, bfv: Keys) -> None:
    folder = tmp_path / "keys"
    secret, public = save_contexts(folder, bfv.secret, tag="session-7")
    assert mode(folder) == 0o700
    assert mode(secret.path) == mode(public.path) == mode(folder / FINGERPRINTS) == 0o600
    recorded = json.loads((folder / FINGERPRINTS).read_text())
    for f in (secret, public):
        assert f.sha256 == hashlib.sha256(f.path.read_bytes()).hexdigest()
        assert recorded[f.path.name]["sha256"] == f.sha256
    assert recorded[secret.path.name]["secret"] is True
    assert recorded[public.path.name]["secret"] is False
    assert fingerprints(folder) == {
        secret.path.name: secret.sha256,
        public.path.name: public.sha256,
    }
    # The server's bundle cannot decrypt; the clients' can.
    server = load_public_context(folder, "session-7", bfv.params)
    client = load_secret_context(folder, "session-7", bfv.params)
    assert not server.has_secret_key and client.has_secret_key
    total = he.add_all(server, [he.encrypt_ints(client, np.arange(10))], length=10)
    assert list(he.decrypt_ints(client, total, 10)) == list(range(10))
    with pytest.raises(HEParameterError):
        he.decrypt_ints(server, total, 10)
    with pytest.raises(HEParameterError):  # a secret file is never taken for a public one
        he.load_public(secret.path.read_bytes(), bfv.params)


def test_files_are_never_overwritten_and_names_are_plain(tmp_path: Path) -> None:
    write_key_file(tmp_path, "a.ctx", b"one", secret=True)
    with pytest.raises(ParameterError, match="never overwritten"):
        write_key_file(tmp_path, "a.ctx", b"two", secret=True)
    assert read_key_file(tmp_path, "a.ctx") == b"one"
    for bad in ("../x", "a/b", "", ".hidden", FINGERPRINTS):
        with pytest.raises(ParameterError):
            write_key_file(tmp_path, bad, b"x", secret=True)
    with pytest.raises(ParameterError, match="empty"):
        write_key_file(tmp_path, "b.ctx", b"", secret=True)


def test_reading_refuses_loose_modes_tampering_and_symlinks(tmp_path: Path) -> None:
    f = write_key_file(tmp_path, "k.ctx", b"secret bytes", secret=True)
    f.path.chmod(0o640)
    with pytest.raises(InsecureKeyFile, match="chmod 600"):
        read_key_file(tmp_path, "k.ctx")
    f.path.chmod(0o600)
    f.path.write_bytes(b"swapped bytes")
    with pytest.raises(InsecureKeyFile, match="fingerprint"):
        read_key_file(tmp_path, "k.ctx")
    write_key_file(tmp_path, "real.ctx", b"real", secret=True)
    (tmp_path / "link.ctx").symlink_to(tmp_path / "real.ctx")
    with pytest.raises(InsecureKeyFile, match="symlink"):
        read_key_file(tmp_path, "link.ctx")
    with pytest.raises(InsecureKeyFile, match="does not exist"):
        read_key_file(tmp_path, "missing.ctx")


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(InsecureKeyFile, match="chmod 700"):
        write_key_file(shared, "k.ctx", b"x", secret=True)
