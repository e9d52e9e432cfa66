"""A self-signed certificate for local use, made once and kept in the state directory.

Browsers allow the microphone only on secure pages; for trying the gateway
on a LAN this certificate (accepted once in the browser) is enough.  SIP over
TLS presents the same one unless ``[sip] tls_certificate`` names another.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

_VALID_DAYS = 825


def server_context(state_dir: Path, hosts: list[str]) -> ssl.SSLContext:
    """An SSL context with the kept certificate, made first if missing or expired."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate_files(state_dir, hosts))
    return context


def certificate_files(state_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """The kept certificate and its key (PEM files), made first if missing or expired."""
    cert_path, key_path = state_dir / "tls" / "cert.pem", state_dir / "tls" / "key.pem"
    if not _usable(cert_path) or not key_path.exists():
        _make(cert_path, key_path, hosts)
    return cert_path, key_path


def _usable(cert_path: Path) -> bool:
    if not cert_path.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)


def _make(cert_path: Path, key_path: Path, hosts: list[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webrtc-sip-gateway (self-signed)")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    for host in {"127.0.0.1", "::1", *hosts}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("made a self-signed certificate in %s", cert_path.parent)
