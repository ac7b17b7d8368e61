"""The consortium PKI: CA, server and client certificates, signing keys, roster.

security.md §1.1/§8: identities are bound to keys by a consortium CA that the
aggregator's operator does not run, otherwise the aggregator could mint
clients (Sybil, X4). ``secagg pki init`` plays that CA for tests and demos;
in a deployment ``ca.key`` and ``roster.key`` stay with the consortium and
only certificates, ``roster.json`` and ``roster.pub`` reach the aggregator.
Even the demo PKI keeps them out of the folder the aggregator serves from:
``init_pki(out)`` writes them to the sibling ``<out>-consortium/``, and an
aggregator whose folder holds either refuses to start (aggregator/tls.py).

TLS certificates use ECDSA P-256 with SHA-256 (what every TLS stack accepts);
the long-term protocol keys and the roster signature are Ed25519
(:mod:`secagg.primitives.signing`). A client's id lives in exactly one place
in its certificate, the URI SAN ``urn:secagg:client:<id>``: the CN is free
text, and ``peer_identities()`` mixes every SAN kind (security.md §4.1, M11).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature as X509InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aggregator.durable import replace_file
from protocol.errors import AuthenticationFailed
from protocol.pki_layout import CA_CERT, CONSORTIUM_SECRETS, ROSTER, ClientPaths, PkiPaths
from protocol.roster import MAX_CLIENT_ID, Roster, RosterEntry, parse_roster, roster_document
from secagg.errors import ParameterError
from secagg.primitives.signing import PUBLIC_BYTES, SEED_BYTES, SigningKey
from secagg.rng import SystemRandomSource

CLIENT_URI_PREFIX = "urn:secagg:client:"
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")
MAX_CLIENTS = 1_000_000  # the protocol's validated range (protocol.params)
MAX_DAYS = 36_500
_CLOCK_SKEW = dt.timedelta(minutes=5)  # backdate so a peer whose clock lags still accepts
_CLIENT_URI = re.compile(re.escape(CLIENT_URI_PREFIX) + r"([1-9][0-9]{0,18})")
_PKI_MARKERS = (CA_CERT, ROSTER, *CONSORTIUM_SECRETS)


class InvalidCertificate(AuthenticationFailed):
    """A certificate is unparsable or carries no (or an ambiguous) secagg client id."""


def misplaced_secrets(paths: PkiPaths) -> list[Path]:
    """Consortium secrets lying in the PKI folder itself (an old layout, or a copy)."""
    return [p for p in paths.secrets_in_root if p.exists()]


@dataclass(frozen=True, slots=True)
class CertAuthority:
    """A CA certificate with its private key: what issuing needs."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


# ----------------------------------------------------------------------------- issuing


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _validity(
    days: int, not_valid_before: dt.datetime | None, not_valid_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    if not 1 <= days <= MAX_DAYS:
        raise ParameterError(f"days must be in [1, {MAX_DAYS}], got {days}")
    now = _now()
    start = not_valid_before if not_valid_before is not None else now - _CLOCK_SKEW
    end = not_valid_after if not_valid_after is not None else now + dt.timedelta(days=days)
    if end <= start:
        raise ParameterError("certificate validity ends before it starts")
    return start, end


def new_ca(days: int = 365, common_name: str = "secagg consortium CA") -> CertAuthority:
    """A fresh self-signed CA (path length 0: it signs leaves only)."""
    key = _new_key()
    start, end = _validity(days, None, None)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "secagg consortium"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertAuthority(cert, key)


def _leaf(
    ca: CertAuthority,
    key: ec.EllipticCurvePrivateKey,
    subject_cn: str,
    san: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    start: dt.datetime,
    end: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def issue_server_cert(
    ca: CertAuthority, server_names: list[str], days: int = 365
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A serverAuth certificate whose SANs are ``server_names`` (IPs become IP SANs)."""
    if not server_names:
        raise ParameterError("the server certificate needs at least one name")
    san: list[x509.GeneralName] = []
    for name in dict.fromkeys(server_names):  # de-duplicate, keep order
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?", name):
                raise ParameterError(f"invalid server name {name!r}") from None
            san.append(x509.DNSName(name))
    key = _new_key()
    start, end = _validity(days, None, None)
    cert = _leaf(ca, key, server_names[0], san, ExtendedKeyUsageOID.SERVER_AUTH, start, end)
    return cert, key


def client_uri(client_id: int) -> str:
    """The URI SAN that names ``client_id``."""
    _check_client_id(client_id)
    return f"{CLIENT_URI_PREFIX}{client_id}"


def _check_client_id(client_id: int) -> None:
    if type(client_id) is not int or not 1 <= client_id <= MAX_CLIENT_ID:
        raise ParameterError(f"client id must be in [1, 2^63 - 1], got {client_id!r}")


def issue_client_cert(
    ca: CertAuthority,
    client_id: int,
    *,
    days: int = 365,
    not_valid_before: dt.datetime | None = None,
    not_valid_after: dt.datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    with_uri: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A clientAuth certificate for ``client_id`` (CN ``client-<id>``, URI SAN).

    The validity overrides and ``with_uri=False`` exist so tests can make
    expired or identity-less certificates through the same code path.
    """
    _check_client_id(client_id)
    key = key if key is not None else _new_key()
    start, end = _validity(days, not_valid_before, not_valid_after)
    san: list[x509.GeneralName] = (
        [x509.UniformResourceIdentifier(client_uri(client_id))] if with_uri else []
    )
    cert = _leaf(ca, key, f"client-{client_id}", san, ExtendedKeyUsageOID.CLIENT_AUTH, start, end)
    return cert, key


# ----------------------------------------------------------------------------- reading


def load_certificate(pem_or_der: bytes) -> x509.Certificate:
    """Parse one certificate given as PEM or DER."""
    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(pem_or_der)
        return x509.load_der_x509_certificate(pem_or_der)
    except ValueError as exc:
        raise InvalidCertificate("not a valid X.509 certificate") from exc


def cert_sha256(cert: x509.Certificate | bytes) -> bytes:
    """SHA-256 of the DER certificate: the fingerprint the roster pins."""
    if isinstance(cert, bytes):
        cert = load_certificate(cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def client_id_from_cert(pem_or_der: bytes | x509.Certificate) -> int:
    """The client id in the certificate's ``urn:secagg:client:<id>`` URI SAN.

    Does not check the chain or validity: call it on certificates that the
    TLS handshake has already verified against the consortium CA. Exactly one
    secagg URI must be present, so a certificate cannot claim two ids.
    """
    cert = pem_or_der if isinstance(pem_or_der, x509.Certificate) else load_certificate(pem_or_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise InvalidCertificate("certificate has no subject alternative name") from None
    except ValueError as exc:  # a malformed extension surfaces when first parsed
        raise InvalidCertificate("certificate extensions are malformed") from exc
    ours = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(CLIENT_URI_PREFIX)
    ]
    if len(ours) != 1:
        raise InvalidCertificate(
            f"certificate must carry exactly one {CLIENT_URI_PREFIX}<id> URI SAN, found {len(ours)}"
        )
    match = _CLIENT_URI.fullmatch(ours[0])
    if match is None or int(match.group(1)) > MAX_CLIENT_ID:
        raise InvalidCertificate(f"malformed client URI SAN {ours[0]!r}")
    return int(match.group(1))


def load_ca(pki_dir: Path) -> CertAuthority:
    """The CA of ``pki_dir`` with its key (only the consortium has the key)."""
    paths = PkiPaths(Path(pki_dir))
    cert = load_certificate(_read(paths.ca_cert))
    key = serialization.load_pem_private_key(_read(paths.ca_key), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ParameterError(f"{paths.ca_key}: not an EC private key")
    return CertAuthority(cert, key)


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    """Raise :class:`InvalidCertificate` unless ``ca_cert`` signed ``cert``."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, X509InvalidSignature) as exc:
        raise InvalidCertificate("certificate was not issued by this CA") from exc


def read_hex_file(path: Path, size: int) -> bytes:
    """A file holding exactly ``size`` bytes as hex (surrounding whitespace allowed)."""
    text = _read(path).decode("ascii", errors="replace").strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ParameterError(f"{path}: expected {2 * size} hex digits") from None
    if len(raw) != size:
        raise ParameterError(f"{path}: expected {size} bytes, got {len(raw)}")
    return raw


def load_signing_key(path: Path) -> SigningKey:
    """A long-term Ed25519 key from its hex seed file (``signing.key``, ``roster.key``)."""
    return SigningKey(read_hex_file(Path(path), SEED_BYTES))


def load_roster(pki_dir: Path) -> Roster:
    """The verified roster of ``pki_dir`` (``roster.json`` against ``roster.pub``)."""
    paths = PkiPaths(Path(pki_dir))
    return parse_roster(_read(paths.roster), read_hex_file(paths.roster_public, PUBLIC_BYTES))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- writing


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: gRPC cannot read encrypted keys, so file mode protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask could only have narrowed it; make it exact
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o644)


def init_pki(
    out: Path,
    clients: int,
    server_names: list[str] | None = None,
    days: int = 365,
    force: bool = False,
) -> PkiPaths:
    """Create a complete PKI directory: CA, server, ``clients`` clients, signed roster.

    Built in a private temporary sibling and renamed into place, so a failure
    never leaves a half-written PKI. An existing non-empty ``out`` is refused
    unless ``force``, and even then only if it looks like a PKI directory, so
    a mistyped ``--out`` cannot delete unrelated files.
    """
    out = Path(out)
    if type(clients) is not int or not 1 <= clients <= MAX_CLIENTS:
        raise ParameterError(f"clients must be in [1, {MAX_CLIENTS}], got {clients!r}")
    names = list(server_names) if server_names else list(DEFAULT_SERVER_NAMES)
    _validity(days, None, None)
    final = PkiPaths(out)
    _check_target(out, force)
    _check_target(final.consortium, force)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    staged = PkiPaths(tmp, tuple(range(1, clients + 1)))
    try:
        staged.consortium.mkdir(mode=0o700)
        _populate(staged, names, days)
        for target in (out, final.consortium):  # re-check: someone may have created them
            _check_target(target, force)
            if target.is_dir() and any(target.iterdir()):
                shutil.rmtree(target)
        os.replace(staged.consortium, final.consortium)
        os.replace(tmp, out)  # also replaces an empty directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(staged.consortium, ignore_errors=True)
        raise
    return PkiPaths(out, staged.client_ids)


def add_client(pki_dir: Path, client_id: int, *, days: int = 365, name: str = "") -> PkiPaths:
    """Enrol ``client_id`` in an existing PKI: certificate, signing key, re-signed roster.

    Needs the consortium's ``ca.key`` and ``roster.key``. The client's files
    are staged in a private temporary directory and renamed into place, and
    the roster is replaced atomically, so a failure leaves the PKI as it was.
    Hosts read the roster at start-up: restart the aggregator and the
    daemons after distributing the new ``roster.json``.
    """
    paths = PkiPaths(Path(pki_dir))
    _check_client_id(client_id)
    _validity(days, None, None)
    ca = load_ca(paths.root)
    roster_key = load_signing_key(paths.roster_key)
    roster = load_roster(paths.root)
    if client_id in roster:
        raise ParameterError(f"client {client_id} is already enrolled in {paths.roster}")
    files = paths.client(client_id)
    if files.dir.exists():
        raise ParameterError(f"{files.dir} already exists; remove it or choose another id")
    if roster_key.public != read_hex_file(paths.roster_public, PUBLIC_BYTES):
        raise ParameterError(f"{paths.roster_key} does not match {paths.roster_public}")
    files.dir.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{client_id}.", suffix=".tmp", dir=files.dir.parent))
    try:
        staged = ClientPaths(
            tmp, tmp / files.cert.name, tmp / files.key.name, tmp / files.signing_key.name
        )
        cert, key = issue_client_cert(ca, client_id, days=days)
        signing = SigningKey(SystemRandomSource().random_bytes(SEED_BYTES))
        _write_public(staged.cert, cert_pem(cert))
        write_private(staged.key, key_pem(key))
        write_private(staged.signing_key, signing.seed.hex().encode() + b"\n")
        entry = RosterEntry(
            client_id, name or f"client-{client_id}", signing.public, cert_sha256(cert)
        )
        os.replace(tmp, files.dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_file(paths.roster, roster_document([*roster.entries.values(), entry], roster_key))
    return PkiPaths(paths.root, (*roster.ids(), client_id))


def remove_client(pki_dir: Path, client_id: int) -> PkiPaths:
    """Take ``client_id`` off the roster (re-signed): the aggregator then refuses it.

    Its certificate still chains to the CA, but the roster no longer binds
    it, so after a restart the aggregator answers PERMISSION_DENIED and the
    other daemons no longer accept its signatures. Its files are left for
    the operator to archive or shred.
    """
    paths = PkiPaths(Path(pki_dir))
    roster_key = load_signing_key(paths.roster_key)
    roster = load_roster(paths.root)
    if client_id not in roster:
        raise ParameterError(f"client {client_id} is not enrolled in {paths.roster}")
    if len(roster) == 1:
        raise ParameterError("cannot remove the last enrolled client")
    kept = [e for cid, e in roster.entries.items() if cid != client_id]
    replace_file(paths.roster, roster_document(kept, roster_key))
    return PkiPaths(paths.root, tuple(sorted(e.id for e in kept)))


def _check_target(out: Path, force: bool) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise ParameterError(f"{out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not force:
        raise ParameterError(f"{out} already exists; pass --force to replace it")
    if not any((out / marker).exists() for marker in _PKI_MARKERS):
        raise ParameterError(
            f"{out} is not a PKI directory (no ca.pem or roster.json); refusing to replace it"
        )


def _populate(paths: PkiPaths, server_names: list[str], days: int) -> None:
    rng = SystemRandomSource()
    ca = new_ca(days + 1)  # outlives the leaves it signs
    _write_public(paths.ca_cert, cert_pem(ca.cert))
    write_private(paths.ca_key, key_pem(ca.key))

    paths.server_cert.parent.mkdir(mode=0o700)
    server_cert, server_key = issue_server_cert(ca, server_names, days)
    _write_public(paths.server_cert, cert_pem(server_cert))
    write_private(paths.server_key, key_pem(server_key))

    entries = []
    for cid in paths.client_ids:
        files = paths.client(cid)
        files.dir.mkdir(mode=0o700, parents=True)
        cert, key = issue_client_cert(ca, cid, days=days)
        signing = SigningKey(rng.random_bytes(SEED_BYTES))
        _write_public(files.cert, cert_pem(cert))
        write_private(files.key, key_pem(key))
        write_private(files.signing_key, signing.seed.hex().encode() + b"\n")
        entries.append(RosterEntry(cid, f"client-{cid}", signing.public, cert_sha256(cert)))

    roster_key = SigningKey(rng.random_bytes(SEED_BYTES))
    write_private(paths.roster_key, roster_key.seed.hex().encode() + b"\n")
    _write_public(paths.roster_public, roster_key.public.hex().encode() + b"\n")
    _write_public(paths.roster, roster_document(entries, roster_key))
