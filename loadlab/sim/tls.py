"""The sim's HTTPS: a CA made at start and a serving certificate it signs, both for one day.

A real cluster's clients verify the API server against the CA in their kubeconfig; so that every
part of that path runs here for real, ``loadlab sim --tls`` makes its own: an EC P-256 CA
(kubeadm offers the same as ``encryptionAlgorithm: ECDSA-P256``; a key takes a millisecond to
make, so a fresh CA costs nothing at start) and a serving certificate for loopback (127.0.0.1,
::1, localhost) and the listen host.
The CA's private key never leaves ``issue_serving_certificate``: it signs one certificate and is
dropped, so nothing can sign another. Only the CA certificate goes out, in the kubeconfig.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=1)  # a sim lives for a run; a stolen CA is useless tomorrow
# Not from a reference: backdating covers a client whose clock is a little behind ours.
BACKDATE = datetime.timedelta(minutes=5)
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
CA_COMMON_NAME = "loadlab-sim-ca"
SERVER_COMMON_NAME = "kube-apiserver"  # the CN kubeadm gives the apiserver's serving certificate


@dataclass(frozen=True)
class ServingCertificate:
    """What the API server serves with, and what its clients trust."""

    ca_pem: bytes
    """The CA certificate (PEM): a kubeconfig's ``certificate-authority-data``, base64'd."""
    cert_pem: bytes
    """The serving certificate (PEM), signed by the CA."""
    key_pem: bytes
    """The serving certificate's private key (PEM, unencrypted; it lives in memory only)."""


def _names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # keep order, drop repeats
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:  # a host name, not an IP literal
            names.append(x509.DNSName(host))
    return names


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue_serving_certificate(
    extra_hosts: Iterable[str] = (), *, now: datetime.datetime | None = None
) -> ServingCertificate:
    """A new CA and a serving certificate it signs for loopback and ``extra_hosts``."""
    now = now if now is not None else datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(CA_COMMON_NAME)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_COMMON_NAME))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(_names([*LOOPBACK_NAMES, *extra_hosts])), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ServingCertificate(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,  # EC keys sign (ECDHE); they encipher nothing
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def server_context(certificate: ServingCertificate) -> ssl.SSLContext:
    """The API server's TLS context (TLS 1.2 or later, HTTP/1.1 by ALPN as aiohttp serves).

    ``ssl`` loads a key only from a file, so the key touches disk for the moment it takes to
    load, in a fresh directory only this user can read, removed at once.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="loadlab-sim-tls-") as folder:
        cert_file, key_file = Path(folder) / "tls.crt", Path(folder) / "tls.key"
        cert_file.write_bytes(certificate.cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(certificate.key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


def client_context(certificate: ServingCertificate) -> ssl.SSLContext:
    """A client's TLS context trusting only this sim's CA (the sim's own DNS watches with it)."""
    return ssl.create_default_context(cadata=certificate.ca_pem.decode())
