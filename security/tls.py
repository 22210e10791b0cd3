"""The local stack's TLS material: a private CA and a short-lived leaf.

``make up`` serves HTTPS on 127.0.0.1 with a certificate for ``localhost``
and ``127.0.0.1`` issued by a CA made on first run with ``trustme``. The CA
lives under ``<var>/tls/`` and is kept, so a browser or ``curl --cacert``
told to trust it once keeps working; the leaf lives at most
:data:`LEAF_LIFETIME_DAYS` (public CAs may not issue longer than 398 days and
Mozilla's profile checks 366) and is reissued when fewer than
:data:`RENEW_BEFORE_DAYS` remain. Private keys are written 0600.

Production uses Let's Encrypt instead (``scripts/setup_ssl``).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

LEAF_LIFETIME_DAYS = 90
RENEW_BEFORE_DAYS = 30
IDENTITIES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert_chain: Path  # leaf + CA (what nginx's ssl_certificate wants)
    key: Path


def tls_files(tls_dir: Path) -> TlsFiles:
    return TlsFiles(tls_dir / "ca.pem", tls_dir / "server-chain.pem", tls_dir / "server-key.pem")


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def leaf_not_after(chain: Path) -> dt.datetime:
    cert = x509.load_pem_x509_certificate(chain.read_bytes())
    return cert.not_valid_after_utc


def needs_renewal(files: TlsFiles, now: dt.datetime | None = None) -> bool:
    if not (files.cert_chain.exists() and files.key.exists()):
        return True
    now = now or dt.datetime.now(dt.UTC)
    return leaf_not_after(files.cert_chain) - now < dt.timedelta(days=RENEW_BEFORE_DAYS)


def ensure_local_tls(tls_dir: Path, now: dt.datetime | None = None) -> TlsFiles:
    """The CA (made once) and a valid leaf (issued or renewed as needed)."""
    import trustme  # local stack and tests only

    tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    files = tls_files(tls_dir)
    ca_key = tls_dir / "ca-key.pem"
    if files.ca_cert.exists() and ca_key.exists():
        ca = trustme.CA.from_pem(files.ca_cert.read_bytes(), ca_key.read_bytes())
    else:
        ca = trustme.CA(organization_name="Transcode Flow local CA")
        _write(ca_key, ca.private_key_pem.bytes(), 0o600)
        _write(files.ca_cert, ca.cert_pem.bytes(), 0o644)
        for stale in (files.cert_chain, files.key):
            stale.unlink(missing_ok=True)
    if needs_renewal(files, now):
        now = now or dt.datetime.now(dt.UTC)
        leaf = ca.issue_cert(
            *IDENTITIES,
            common_name="localhost",
            not_before=now - dt.timedelta(minutes=5),
            not_after=now + dt.timedelta(days=LEAF_LIFETIME_DAYS),
        )
        _write(files.key, leaf.private_key_pem.bytes(), 0o600)
        _write(files.cert_chain, b"".join(blob.bytes() for blob in leaf.cert_chain_pems), 0o644)
    return files


if __name__ == "__main__":  # python -m security.tls DIR: prints the CA path
    import sys

    print(ensure_local_tls(Path(sys.argv[1])).ca_cert)
