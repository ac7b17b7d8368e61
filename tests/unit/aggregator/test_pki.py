"""PKI and roster: files and modes, chains, client ids from certificates, roster tampering."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aggregator.pki import (
    InvalidCertificate,
    cert_sha256,
    client_id_from_cert,
    init_pki,
    issue_client_cert,
    load_ca,
    load_roster,
    load_signing_key,
    new_ca,
    verify_issued_by,
)
from protocol.errors import AuthenticationFailed, UnknownClient
from protocol.pki_layout import PkiPaths
from protocol.roster import (
    InvalidRoster,
    Roster,
    RosterEntry,
    parse_roster,
    roster_document,
    sign_roster,
)
from secagg.cli import main
from secagg.errors import InvalidSignature, ParameterError, SecAggError
from secagg.primitives.signing import SigningKey
from secagg.rng import DeterministicRandomSource

N = 3


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("pki") / "pki", clients=N)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# ------------------------------------------------------------------------ pki init


def test_init_creates_every_file_with_private_keys_0600(pki: PkiPaths) -> None:
    assert pki.client_ids == tuple(range(1, N + 1))
    private = [pki.ca_key, pki.server_key, pki.roster_key]
    public = [pki.ca_cert, pki.server_cert, pki.roster, pki.roster_public]
    for cid in pki.client_ids:
        c = pki.client(cid)
        private += [c.key, c.signing_key]
        public.append(c.cert)
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in public:
        assert path.is_file(), path
    for name, value in pki.as_dict().items():
        if name != "clients":
            assert Path(value).exists()
    # No staging directory is left next to the result.
    assert sorted(p.name for p in pki.root.parent.iterdir()) == [pki.root.name, pki.consortium.name]


def test_ca_is_a_self_signed_ca(pki: PkiPaths) -> None:
    ca = _cert(pki.ca_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    verify_issued_by(ca, ca)
    assert ca.subject == ca.issuer


def test_server_and_client_certs_chain_to_the_ca(pki: PkiPaths) -> None:
    ca = _cert(pki.ca_cert)
    server = _cert(pki.server_cert)
    server.verify_directly_issued_by(ca)  # cryptography's own signature check
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    for cid in pki.client_ids:
        cert = _cert(pki.client(cid).cert)
        cert.verify_directly_issued_by(ca)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == f"client-{cid}"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            f"urn:secagg:client:{cid}"
        ]
        key = serialization.load_pem_private_key(pki.client(cid).key.read_bytes(), None)
        assert key.public_key() == cert.public_key()


def test_foreign_ca_signature_is_rejected(pki: PkiPaths) -> None:
    foreign = new_ca()
    cert, _ = issue_client_cert(foreign, 1)
    with pytest.raises(InvalidCertificate):
        verify_issued_by(cert, _cert(pki.ca_cert))


def test_custom_server_names(tmp_path: Path) -> None:
    paths = init_pki(
        tmp_path / "pki", clients=1, server_names=["agg.example.org", "::1", "10.0.0.7"], days=2
    )
    server = _cert(paths.server_cert)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agg.example.org"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["::1", "10.0.0.7"]
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=2) <= lifetime <= dt.timedelta(days=2, minutes=6)


@pytest.mark.parametrize("bad", [{"clients": 0}, {"days": 0}, {"server_names": ["bad name"]}])
def test_init_rejects_bad_arguments(tmp_path: Path, bad: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"clients": 1, **bad}
    with pytest.raises(ParameterError):
        init_pki(tmp_path / "pki", **kwargs)
    assert not (tmp_path / "pki").exists()


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    first = init_pki(out, clients=2)
    ca_before = first.ca_cert.read_bytes()
    with pytest.raises(ParameterError, match="--force"):
        init_pki(out, clients=2)
    assert first.ca_cert.read_bytes() == ca_before  # untouched

    second = init_pki(out, clients=1, force=True)
    assert second.ca_cert.read_bytes() != ca_before
    assert not (out / "clients" / "2").exists()  # nothing stale survives a replacement
    assert load_roster(out).ids() == (1,)


def test_force_never_deletes_a_directory_that_is_not_a_pki(tmp_path: Path) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ParameterError, match="not a PKI directory"):
        init_pki(out, clients=1, force=True)
    assert (out / "thesis.tex").read_text() == "precious"


def test_an_empty_existing_directory_is_used(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    out.mkdir()
    assert load_roster(init_pki(out, clients=1).root).ids() == (1,)


def test_cli_pki_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pki"
    argv = ["pki", "init", "--out", str(out), "--clients", "2", "--server-name", "localhost"]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["roster"] == str(out / "roster.json")
    assert set(printed["clients"]) == {"1", "2"}
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert "roster" in capsys.readouterr().out


# ------------------------------------------------------------- ids from certificates


def test_client_id_from_pem_and_der(pki: PkiPaths) -> None:
    for cid in pki.client_ids:
        pem = pki.client(cid).cert.read_bytes()
        der = _cert(pki.client(cid).cert).public_bytes(serialization.Encoding.DER)
        assert client_id_from_cert(pem) == cid
        assert client_id_from_cert(der) == cid


def test_cert_without_uri_san_is_rejected(pki: PkiPaths) -> None:
    cert, _ = issue_client_cert(load_ca(pki.root), 1, with_uri=False)
    # The CN still says client-1: it must not be taken as the identity.
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "client-1"
    with pytest.raises(InvalidCertificate, match="subject alternative name"):
        client_id_from_cert(cert.public_bytes(serialization.Encoding.PEM))


def _cert_with_uris(ca_dir: Path, uris: list[str]) -> bytes:
    ca = load_ca(ca_dir)
    cert, key = issue_client_cert(ca, 1, with_uri=False)
    rebuilt = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("client.example.org")]
                + [x509.UniformResourceIdentifier(u) for u in uris]
            ),
            critical=False,
        )
    )
    from cryptography.hazmat.primitives import hashes

    return rebuilt.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "uris",
    [
        [],
        ["urn:other:client:1"],
        ["urn:secagg:client:1", "urn:secagg:client:2"],
        ["urn:secagg:client:01"],
        ["urn:secagg:client:0"],
        ["urn:secagg:client:-1"],
        ["urn:secagg:client:1x"],
        ["urn:secagg:client:"],
        ["urn:secagg:client:99999999999999999999"],
    ],
)
def test_missing_ambiguous_or_malformed_uri_is_rejected(pki: PkiPaths, uris: list[str]) -> None:
    with pytest.raises(InvalidCertificate):
        client_id_from_cert(_cert_with_uris(pki.root, uris))


def test_other_uris_beside_ours_are_ignored(pki: PkiPaths) -> None:
    pem = _cert_with_uris(pki.root, ["https://example.org", "urn:secagg:client:42"])
    assert client_id_from_cert(pem) == 42


@pytest.mark.parametrize("garbage", [b"", b"not a cert", b"-----BEGIN CERTIFICATE-----\nAA\n"])
def test_garbage_is_not_a_certificate(garbage: bytes) -> None:
    with pytest.raises(InvalidCertificate):
        client_id_from_cert(garbage)


def test_invalid_certificate_is_unauthenticated() -> None:
    assert issubclass(InvalidCertificate, SecAggError)
    assert InvalidCertificate.status == "UNAUTHENTICATED"


# --------------------------------------------------------------------------- roster


def test_roster_binds_signing_keys_and_certificates(pki: PkiPaths) -> None:
    roster = load_roster(pki.root)
    assert roster.ids() == pki.client_ids
    keys = roster.signing_keys()
    for cid in pki.client_ids:
        files = pki.client(cid)
        assert keys[cid] == load_signing_key(files.signing_key).public
        assert roster.entries[cid].cert_sha256 == cert_sha256(files.cert.read_bytes())
        assert roster.entries[cid].name == f"client-{cid}"
        assert roster.authenticate(cid, cert_sha256(files.cert.read_bytes())).id == cid
    # Distinct keys per client: none can sign for another.
    assert len(set(keys.values())) == N


def test_roster_authenticate_rejects_unenrolled_and_substituted(pki: PkiPaths) -> None:
    roster = load_roster(pki.root)
    with pytest.raises(UnknownClient):
        roster.authenticate(N + 1)
    other = cert_sha256(pki.client(2).cert.read_bytes())
    with pytest.raises(AuthenticationFailed):
        roster.authenticate(1, other)


def _doc(pki: PkiPaths) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(pki.roster.read_bytes())
    return doc


def _public(pki: PkiPaths) -> bytes:
    return bytes.fromhex(pki.roster_public.read_text())


def _valid_key_hex(seed: int) -> str:
    return SigningKey(DeterministicRandomSource(seed).random_bytes(32)).public.hex()


def _set(index: int, field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["clients"][index][field] = value

    return edit


def _swap(doc: dict[str, Any]) -> None:
    doc["clients"][0], doc["clients"][1] = doc["clients"][1], doc["clients"][0]


def _swap_ids(doc: dict[str, Any]) -> None:
    # Swap the ids but keep ascending order: the keys now belong to other ids.
    a, b = doc["clients"][0], doc["clients"][1]
    a["signing_public"], b["signing_public"] = b["signing_public"], a["signing_public"]
    a["cert_sha256"], b["cert_sha256"] = b["cert_sha256"], a["cert_sha256"]


def _extra(doc: dict[str, Any]) -> None:
    doc["clients"].append(
        {
            "id": 99,
            "name": "client-99",
            "signing_public": _valid_key_hex(99),
            "cert_sha256": "ab" * 32,
        }
    )


def _drop(doc: dict[str, Any]) -> None:
    del doc["clients"][-1]


def _flip_sig(doc: dict[str, Any]) -> None:
    sig = bytearray.fromhex(doc["signature"])
    sig[7] ^= 1
    doc["signature"] = sig.hex()


TAMPERING: dict[str, Callable[[dict[str, Any]], None]] = {
    "id changed": _set(0, "id", 7),
    "id changed keeping order": _set(N - 1, "id", N + 5),
    "signing key replaced": _set(1, "signing_public", _valid_key_hex(1)),
    "cert hash changed": _set(1, "cert_sha256", "00" * 32),
    "name changed": _set(0, "name", "client-9"),
    "entries reordered": _swap,
    "keys moved between ids": _swap_ids,
    "extra entry": _extra,
    "entry removed": _drop,
    "signature flipped": _flip_sig,
    "version changed": lambda d: d.update(version=2),
    "unknown top-level key": lambda d: d.update(comment="x"),
    "unknown entry key": _set(0, "revoked", False),
    "id as string": _set(0, "id", "1"),
    "id as bool": _set(0, "id", True),
    "upper-case hex": _set(0, "signing_public", "AB" * 32),
    "empty clients": lambda d: d.update(clients=[]),
    "clients not a list": lambda d: d.update(clients={}),
    "signature missing": lambda d: d.pop("signature"),
    "duplicate id": lambda d: d["clients"].append(dict(d["clients"][-1])),
}


@pytest.mark.parametrize("tamper", list(TAMPERING.values()), ids=list(TAMPERING))
def test_any_tampering_is_rejected(pki: PkiPaths, tamper: Callable[[dict[str, Any]], None]) -> None:
    doc = _doc(pki)
    parse_roster(json.dumps(doc).encode(), _public(pki))  # the untouched document verifies
    tamper(doc)
    with pytest.raises((InvalidSignature, InvalidRoster)):
        parse_roster(json.dumps(doc).encode(), _public(pki))


def test_reordering_is_rejected_even_though_the_signed_set_is_equal(pki: PkiPaths) -> None:
    doc = _doc(pki)
    _swap(doc)
    with pytest.raises(InvalidRoster, match="ascending"):
        parse_roster(json.dumps(doc).encode(), _public(pki))


def test_roster_signed_by_another_key_is_rejected(pki: PkiPaths) -> None:
    roster = load_roster(pki.root)
    forged_entries = [*roster.entries.values()]
    forged_entries.append(
        RosterEntry(99, "client-99", bytes.fromhex(_valid_key_hex(9)), b"\x01" * 32)
    )
    mallory = SigningKey(b"\x07" * 32)
    forged = roster_document(forged_entries, mallory)
    assert parse_roster(forged, mallory.public).ids()[-1] == 99  # well-formed, self-consistent
    with pytest.raises(InvalidSignature):
        parse_roster(forged, _public(pki))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"version": 1, "version": 1, "clients": [], "signature": ""}',
        b'{"version": 1.0, "clients": [], "signature": ""}',
        b'{"version": NaN, "clients": [], "signature": ""}',
        b"[" * 100_000,
    ],
)
def test_malformed_json_is_rejected(pki: PkiPaths, raw: bytes) -> None:
    with pytest.raises(InvalidRoster):
        parse_roster(raw, _public(pki))


def test_bad_roster_public_key_is_rejected(pki: PkiPaths) -> None:
    with pytest.raises(InvalidRoster):
        parse_roster(pki.roster.read_bytes(), b"\x00" * 31)
    with pytest.raises(InvalidSignature):
        parse_roster(pki.roster.read_bytes(), bytes.fromhex(_valid_key_hex(3)))


def test_signature_is_over_canonical_fields_not_json_bytes(pki: PkiPaths) -> None:
    roster = load_roster(pki.root)
    key = load_signing_key(pki.roster_key)
    entries = list(roster.entries.values())
    # Order of the input does not matter: the signature covers id order.
    assert sign_roster(entries, key) == sign_roster(entries[::-1], key)
    # Re-spelling the JSON (compact, keys reordered) keeps it valid.
    doc = _doc(pki)
    doc["clients"] = [dict(reversed(list(e.items()))) for e in doc["clients"]]
    respelled = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    assert parse_roster(respelled, _public(pki)) == roster


def test_entries_are_validated_on_construction() -> None:
    key = bytes.fromhex(_valid_key_hex(1))
    with pytest.raises(InvalidRoster):
        RosterEntry(0, "client-0", key, b"\x00" * 32)
    with pytest.raises(InvalidRoster):
        RosterEntry(1, "client 1", key, b"\x00" * 32)
    with pytest.raises(InvalidRoster):
        RosterEntry(1, "client-1", b"\x00" * 32 + b"\x01", b"\x00" * 32)
    with pytest.raises(InvalidRoster):
        RosterEntry(1, "client-1", key, b"\x00" * 31)
    entry = RosterEntry(1, "client-1", key, b"\x00" * 32)
    with pytest.raises(InvalidRoster):
        Roster({2: entry})
    with pytest.raises(InvalidRoster, match="duplicate signing key"):
        sign_roster(
            [entry, RosterEntry(2, "client-2", key, b"\x01" * 32)], SigningKey(b"\x01" * 32)
        )
