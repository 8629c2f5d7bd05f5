"""The control plane's certificates: a throwaway CA, the apiserver's serving certificate, an
admin client certificate (group system:masters), one client certificate per component (so the
audit log tells the controller-manager's writes from yours) and the service-account signing key.

ECDSA P-256 keys: generated in microseconds, accepted by every component."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_IP = "10.0.0.1"  # first address of --service-cluster-ip-range
ADMIN_USER = "deepmarket-admin"
# Each component's user name, as real clusters name them. They stay in system:masters: a
# throwaway cluster gains nothing from the per-controller service-account credentials a
# least-privilege controller-manager would need.
COMPONENT_USERS = {
    "kube-controller-manager": "system:kube-controller-manager",
    "kube-scheduler": "system:kube-scheduler",
    "kwok": "kwok",
    # The apiserver's identity towards kubelets (logs, exec, port-forward on the real node).
    "apiserver-kubelet-client": "kube-apiserver-kubelet-client",
}


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    def client(self, component: str) -> tuple[Path, Path]:
        """(certificate, key) of a component's client identity."""
        directory = self.ca_cert.parent
        return directory / f"{component}.crt", directory / f"{component}.key"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: list[x509.ObjectIdentifier] | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pki(directory: Path, extra_ips: tuple[str, ...] = ()) -> Pki:
    """Create every certificate and key the control plane needs under `directory`;
    `extra_ips` are more addresses the apiserver is reached at (the real node's pods reach it
    at the host's address)."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        *(
            directory / n
            for n in (
                "ca.crt",
                "ca.key",
                "apiserver.crt",
                "apiserver.key",
                "admin.crt",
                "admin.key",
                "sa.key",
                "sa.pub",
            )
        )
    )
    ca_key, ca_name = _key(), _name("deepmarket-dev-ca")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    serving_key = _key()
    serving = _cert(
        _name("kube-apiserver"),
        serving_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=[
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address(SERVICE_IP)),
            *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips),
        ],
    )
    admin_key = _key()
    admin = _cert(
        _name(ADMIN_USER, "system:masters"),
        admin_key,
        ca_name,
        ca_key,
        usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    sa_key = _key()
    pem = serialization.Encoding.PEM
    clients = []
    for component, user in COMPONENT_USERS.items():
        key = _key()
        cert = _cert(
            _name(user, "system:masters"),
            key,
            ca_name,
            ca_key,
            usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        cert_path, key_path = pki.client(component)
        clients += [(cert_path, cert.public_bytes(pem)), (key_path, _pem_key(key))]
    for path, data in (
        *clients,
        (pki.ca_cert, ca.public_bytes(pem)),
        (pki.ca_key, _pem_key(ca_key)),
        (pki.serving_cert, serving.public_bytes(pem)),
        (pki.serving_key, _pem_key(serving_key)),
        (pki.admin_cert, admin.public_bytes(pem)),
        (pki.admin_key, _pem_key(admin_key)),
        (pki.sa_key, _pem_key(sa_key)),
        (
            pki.sa_pub,
            sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
        ),
    ):
        path.write_bytes(data)
        if path.name.endswith(".key"):
            path.chmod(0o600)
    return pki


def issue_user(pki: Pki, user: str, groups: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A client certificate for a person: CN is the user name, each O a group (how the apiserver
    reads x509 identities). Signed by the cluster's CA; returns (certificate, key) paths."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_name = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()).subject
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
    key = _key()
    cert = _cert(x509.Name(attrs), key, ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    directory = pki.ca_cert.parent / "users"
    directory.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", user)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def write_client_cert(pki: Pki, component: str, user: str, org: str | None = None) -> None:
    """A client certificate for `user` (in group `org`) signed by the cluster's CA, stored as
    `component`'s (see `Pki.client`): the real node's kubelet and kube-proxy identities."""
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = _cert(_name(user, org), key, ca.subject, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    cert_path, key_path = pki.client(component)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
