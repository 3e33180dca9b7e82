"""Synapse servers that federate with each other on loopback.

Each server is named `127.0.0.1:<port>` after its federation listener (TLS with
a throw-away self-signed certificate; peers do not verify certificates), so
servers find each other without DNS, and fetch each other's signing keys
directly. Loopback is taken off the addresses Synapse refuses to reach over
federation.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .ports import free_port
from .synapse import SynapseServer


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "federation.crt", directory / "federation.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def federating_server(
    make: Callable[..., SynapseServer], config: dict[str, Any] | None, **kwargs: Any
) -> SynapseServer:
    """A started server from `make` (the `make_synapse` fixture) that federates."""
    port = free_port()
    server = make(
        config,
        start=False,
        server_name=f"127.0.0.1:{port}",
        extra={
            "federation_domain_whitelist": None,
            "federation_verify_certificates": False,
            # An IP literal as a server name meets only the blocklist, not the
            # allowlist: the (legacy, federation-only) blocklist is emptied.
            "federation_ip_range_blacklist": [],
        },
        **kwargs,
    )
    cert, key = _self_signed(server.dir)
    server.config["tls_certificate_path"] = str(cert)
    server.config["tls_private_key_path"] = str(key)
    server.config["listeners"].append(
        {
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": True,
            "x_forwarded": False,
            "resources": [{"names": ["federation"], "compress": False}],
        }
    )
    server.write_config()
    server.start()
    return server
