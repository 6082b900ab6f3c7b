"""The cluster's certificates: a CA, the brokers' server certificates, node identities, revocation.

A node's identity is a client certificate with ``CN=<node name>``, signed by the cluster
CA from a CSR the node made itself (its key never leaves the node). Brokers require
such a certificate and take its CN as the MQTT user name, so the link ACL that limits
a user to its own topics limits a node to its own link. Revocation is a CRL signed by
the same CA.

The work is done by the ``openssl`` command (already needed for the local API server),
so the project needs no cryptography package; everything here is PEM bytes in and out.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from runtime.errors import ComponentRuntimeError

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
CA_DAYS = 3650
IDENTITY_DAYS = 365
SERVER_DAYS = 825


class PkiError(ComponentRuntimeError, RuntimeError):
    """openssl refused, or a certificate or request is not what it must be; the message says which."""


def _openssl(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> bytes:
    binary = shutil.which("openssl")
    if binary is None:
        raise PkiError("openssl is missing: apt-get install openssl (scripts/setup does)")
    result = subprocess.run([binary, *args], input=stdin, capture_output=True, cwd=cwd, check=False, timeout=60)
    if result.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def ca_hash(cert_pem: bytes) -> str:
    """The SHA-256 of the CA certificate's DER form: what a join token pins."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode())).hexdigest()


@dataclass(frozen=True)
class CertInfo:
    subject_cn: str
    serial: str  # upper-case hex, as openssl prints it
    not_before: datetime
    not_after: datetime
    issuer_cn: str


def cert_info(cert_pem: bytes) -> CertInfo:
    out = _openssl("x509", "-noout", "-subject", "-issuer", "-serial", "-startdate", "-enddate", "-nameopt",
                   "RFC2253", stdin=cert_pem).decode()
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def when(text: str) -> datetime:
        return datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)

    return CertInfo(subject_cn=_cn(fields.get("subject", "")), serial=fields["serial"].upper(),
                    not_before=when(fields["notBefore"]), not_after=when(fields["notAfter"]),
                    issuer_cn=_cn(fields.get("issuer", "")))


def _cn(rfc2253: str) -> str:
    match = re.search(r"(?:^|,)CN=([^,]*)", rfc2253)
    return match.group(1) if match else ""


def new_key_and_csr(common_name: str) -> tuple[bytes, bytes]:
    """A fresh P-256 key and a CSR for ``CN=common_name``; the key stays with the caller."""
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key.pem"
        csr = _openssl("req", "-new", *EC_KEY, "-keyout", str(key), "-subj", f"/CN={common_name}")
        return key.read_bytes(), csr


def _serial() -> str:
    return "0x" + secrets.token_hex(16)


@dataclass(frozen=True)
class CertificateAuthority:
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def create(cls, common_name: str = "edgehive-cluster-ca", days: int = CA_DAYS) -> CertificateAuthority:
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "ca.key"
            cert = _openssl("req", "-x509", *EC_KEY, "-keyout", str(key), "-days", str(days),
                            "-subj", f"/CN={common_name}",
                            "-addext", "basicConstraints=critical,CA:TRUE",
                            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
            return cls(cert, key.read_bytes())

    @property
    def hash(self) -> str:
        return ca_hash(self.cert_pem)

    def _sign(self, csr_pem: bytes, extensions: str, days: int) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "ca.crt").write_bytes(self.cert_pem)
            (d / "ca.key").write_bytes(self.key_pem)
            (d / "ext.cnf").write_text(extensions)
            return _openssl("x509", "-req", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", _serial(),
                            "-days", str(days), "-sha256", "-extfile", "ext.cnf", stdin=csr_pem, cwd=d)

    def sign_identity(self, csr_pem: bytes, common_name: str, days: int = IDENTITY_DAYS) -> bytes:
        """A client certificate for ``common_name``; the CSR must be self-signed and name exactly that CN."""
        try:
            out = _openssl("req", "-noout", "-verify", "-subject", "-nameopt", "RFC2253", stdin=csr_pem).decode()
        except PkiError as exc:
            raise PkiError(f"the certificate request is invalid ({exc})") from exc
        subject = next((line.split("=", 1)[1] for line in out.splitlines() if line.startswith("subject=")), "")
        if subject != f"CN={common_name}":
            raise PkiError(f"the certificate request names {subject or 'nothing'!r}, not CN={common_name}")
        return self._sign(csr_pem, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                   "extendedKeyUsage=clientAuth\n", days)

    def issue(self, common_name: str, *, server_names: Iterable[str] = (), client: bool = False,
              days: int = SERVER_DAYS) -> tuple[bytes, bytes]:
        """A key and certificate made here: a server's (``server_names`` as DNS:/IP: entries) or a client's."""
        key, csr = new_key_and_csr(common_name)
        names = list(server_names)
        usage = "clientAuth" if client else "serverAuth"
        extensions = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                      f"extendedKeyUsage={usage}\n")
        if names:
            extensions += "subjectAltName=" + ",".join(names) + "\n"
        return key, self._sign(csr, extensions, days)

    def crl(self, revoked: Iterable[tuple[str, str]], days: int = 30) -> bytes:
        """A CRL listing ``(serial hex, common name)`` pairs; an empty one is valid and is what brokers load first."""
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "ca.crt").write_bytes(self.cert_pem)
            (d / "ca.key").write_bytes(self.key_pem)
            stamp = datetime.now(UTC).strftime("%y%m%d%H%M%SZ")
            lines = [f"R\t991231235959Z\t{stamp}\t{serial.upper().removeprefix('0X')}\tunknown\t/CN={cn}\n"
                     for serial, cn in revoked]
            (d / "index.txt").write_text("".join(lines))
            (d / "crlnumber").write_text("01\n")
            (d / "ca.cnf").write_text(
                "[ca]\ndefault_ca = edgehive\n[edgehive]\ndatabase = index.txt\ncrlnumber = crlnumber\n"
                f"default_md = sha256\ndefault_crl_days = {days}\n")
            return _openssl("ca", "-gencrl", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", cwd=d)


def verify(cert_pem: bytes, ca_pem: bytes, crl_pem: bytes | None = None) -> str | None:
    """None when ``cert_pem`` chains to ``ca_pem`` (and is not on the CRL); otherwise openssl's reason."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "ca.crt").write_bytes(ca_pem)
        (d / "cert.pem").write_bytes(cert_pem)
        args = ["verify", "-CAfile", "ca.crt"]
        if crl_pem is not None:
            (d / "crl.pem").write_bytes(crl_pem)
            args += ["-crl_check", "-CRLfile", "crl.pem"]
        try:
            _openssl(*args, "cert.pem", cwd=d)
        except PkiError as exc:
            return str(exc)
        return None


def crl_serials(crl_pem: bytes) -> set[str]:
    """The serial numbers (upper-case hex) a CRL revokes."""
    text = _openssl("crl", "-noout", "-text", stdin=crl_pem).decode()
    return {m.upper() for m in re.findall(r"Serial Number:\s*([0-9A-Fa-f]+)", text)}
