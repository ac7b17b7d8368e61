"""`secagg pki add` / `pki remove`: enrol or drop one client without re-issuing the rest."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from aggregator.pki import (
    add_client,
    cert_sha256,
    client_id_from_cert,
    init_pki,
    load_roster,
    load_signing_key,
    remove_client,
    verify_issued_by,
)
from protocol.errors import AuthenticationFailed, UnknownClient
from protocol.pki_layout import PkiPaths
from secagg.cli import main
from secagg.errors import ParameterError


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return init_pki(tmp_path / "pki", clients=2).root


def test_add_issues_a_chained_cert_and_re_signs_the_roster(pki: Path) -> None:
    before = load_roster(pki)
    paths = add_client(pki, 7, name="hospital-7")
    files = paths.client(7)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    verify_issued_by(cert, x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes()))
    assert client_id_from_cert(cert) == 7
    roster = load_roster(pki)  # verifies the new signature against roster.pub
    assert roster.ids() == (1, 2, 7)
    entry = roster.authenticate(7, cert_sha256(cert))
    assert entry.name == "hospital-7"
    assert entry.signing_public == load_signing_key(files.signing_key).public
    assert {cid: roster.entries[cid] for cid in before.ids()} == before.entries  # others kept
    for private in (files.key, files.signing_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.dir.stat().st_mode) == 0o700
    with pytest.raises(AuthenticationFailed):  # someone else's certificate for id 7
        roster.authenticate(7, cert_sha256(paths.client(1).cert.read_bytes()))


def test_add_refuses_an_enrolled_id_and_leaves_everything_as_it_was(pki: Path) -> None:
    roster_bytes = (pki / "roster.json").read_bytes()
    with pytest.raises(ParameterError, match="already enrolled"):
        add_client(pki, 2)
    with pytest.raises(ParameterError, match="client id"):
        add_client(pki, 0)
    assert (pki / "roster.json").read_bytes() == roster_bytes
    assert sorted(p.name for p in (pki / "clients").iterdir()) == ["1", "2"]


def test_add_needs_the_consortium_keys(pki: Path) -> None:
    PkiPaths(pki).roster_key.unlink()
    with pytest.raises(ParameterError, match=r"roster\.key"):
        add_client(pki, 3)
    assert not (pki / "clients" / "3").exists()


def test_remove_takes_the_client_off_the_roster(pki: Path) -> None:
    cert = (pki / "clients" / "2" / "client.pem").read_bytes()
    paths = remove_client(pki, 2)
    assert paths.client_ids == (1,)
    roster = load_roster(pki)
    assert roster.ids() == (1,)
    with pytest.raises(UnknownClient):
        roster.authenticate(2, cert_sha256(cert))
    with pytest.raises(ParameterError, match="not enrolled"):
        remove_client(pki, 2)
    with pytest.raises(ParameterError, match="last enrolled"):
        remove_client(pki, 1)


def test_cli_add_and_remove(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "add", "--pki-dir", str(pki), "--client", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["roster_ids"] == [1, 2, 5]
    assert Path(printed["signing_key"]).exists()
    assert main(["pki", "add", "--pki-dir", str(pki), "--client", "5"]) == 2
    assert "already enrolled" in capsys.readouterr().err
    assert main(["pki", "remove", "--pki-dir", str(pki), "--client", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1, "roster_ids": [2, 5]}
