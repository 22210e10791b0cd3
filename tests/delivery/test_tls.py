"""TLS of the rendered NGINX config, checked from outside like a client would:
sslyze against Mozilla's intermediate profile, old protocols refused, HTTP
redirected, the local CA's leaf short-lived and renewed. Real NGINX
(tests/delivery/edge.py), no mocks."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl

import pytest
import requests

from security.tls import LEAF_LIFETIME_DAYS, ensure_local_tls, leaf_not_after, needs_renewal


def test_mozilla_intermediate_profile(delivery) -> None:
    from sslyze import Scanner, ServerNetworkLocation, ServerScanRequest
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    location = ServerNetworkLocation("127.0.0.1", delivery.edge.https_port)
    scanner = Scanner()
    scanner.queue_scans([ServerScanRequest(server_location=location, scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER)])
    (result,) = list(scanner.get_results())
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(result, profile)
        issues: dict[str, str] = {}
    except ServerNotCompliantWithTlsConfiguration as exc:
        issues = exc.issues
    # The local CA is in no public trust store: the one expected deviation
    # (NOTES.md "TLS checks"). A Let's Encrypt certificate passes it.
    issues.pop("certificate_path_validation", None)
    assert issues == {}, issues


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_are_refused(delivery, version: ssl.TLSVersion) -> None:
    ctx = delivery.edge.ssl_context()
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = version
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer what old TLS needs
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", delivery.edge.https_port), timeout=5) as sock:
        with pytest.raises(ssl.SSLError):
            with ctx.wrap_socket(sock, server_hostname="localhost"):
                pass


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_work_with_forward_secret_aead(delivery, version: ssl.TLSVersion) -> None:
    ctx = delivery.edge.ssl_context(minimum_version=version, maximum_version=version)
    with socket.create_connection(("127.0.0.1", delivery.edge.https_port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            name, proto, _ = tls.cipher()
            assert proto == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            if version is ssl.TLSVersion.TLSv1_2:
                assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name


def test_certificate_valid_for_localhost_and_loopback(delivery) -> None:
    for host in ("localhost", "127.0.0.1"):
        r = requests.get(f"https://{host}:{delivery.edge.https_port}/", verify=str(delivery.edge.tls.ca_cert), timeout=5)
        assert r.status_code == 200


def test_http_redirects_to_https(delivery) -> None:
    edge = delivery.edge
    r = requests.get(f"http://127.0.0.1:{edge.http_port}/api/jobs?x=1", allow_redirects=False, timeout=5)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://127.0.0.1:{edge.https_port}/api/jobs?x=1"
    assert "nginx/" not in r.headers.get("Server", "")  # server_tokens off


def test_local_ca_leaf_is_short_lived_renewed_and_private(tmp_path) -> None:
    files = ensure_local_tls(tmp_path / "tls")
    lifetime = leaf_not_after(files.cert_chain) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=LEAF_LIFETIME_DAYS - 1) < lifetime <= dt.timedelta(days=366)
    assert os.stat(files.key).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "tls" / "ca-key.pem").st_mode & 0o777 == 0o600
    ca_before, leaf_before = files.ca_cert.read_bytes(), files.cert_chain.read_bytes()
    ensure_local_tls(tmp_path / "tls")  # fresh: nothing changes
    assert files.cert_chain.read_bytes() == leaf_before
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=LEAF_LIFETIME_DAYS - 29)
    assert needs_renewal(files, later)
    ensure_local_tls(tmp_path / "tls", now=later)  # < 30 days left: reissued, same CA
    assert files.cert_chain.read_bytes() != leaf_before
    assert files.ca_cert.read_bytes() == ca_before
    assert leaf_not_after(files.cert_chain) > later + dt.timedelta(days=LEAF_LIFETIME_DAYS - 1)
