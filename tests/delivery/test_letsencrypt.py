"""scripts/setup_ssl end to end against Pebble, Let's Encrypt's own ACME test server.

Everything runs on loopback: pebble-challtestsrv answers DNS for the test
domain with 127.0.0.1, Pebble validates the HTTP-01 challenge by fetching it
from our NGINX (the stack's own config, started by scripts/stack.sh), certbot
obtains the certificate, the deploy hook installs it and reloads NGINX, and a
forced renewal swaps it again without a restart.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from include.config import PROJECT_ROOT
from tests.stack import free_port

pytestmark = pytest.mark.timeout(300)
DOMAIN = "media.transcode.test"


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def served_certificate(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


@pytest.fixture
def acme(tmp_path: Path) -> Iterator[dict]:
    procs: list[subprocess.Popen] = []
    dns_port, mgmt_port, acme_port, acme_mgmt = free_port(), free_port(), free_port(), free_port()
    https_port, http_port = free_port(), free_port()
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem, cert_pem, key_pem = tmp_path / "acme-ca.pem", tmp_path / "acme-cert.pem", tmp_path / "acme-key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server.cert_chain_pems[0].write_to_path(str(cert_pem))
    server.private_key_pem.write_to_path(str(key_pem))
    config = tmp_path / "pebble.json"
    config.write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{acme_port}", "managementListenAddress": f"127.0.0.1:{acme_mgmt}",
        "certificate": str(cert_pem), "privateKey": str(key_pem),
        "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "", "externalAccountBindingRequired": False,
    }}))  # fmt: skip
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    stack_env: dict[str, str] | None = None
    try:
        dns = subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                                "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                                "-management", f"127.0.0.1:{mgmt_port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(dns)
        wait_listening(mgmt_port, dns)
        pebble = subprocess.Popen(["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
                                  env=env, stdout=(tmp_path / "pebble.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(pebble)
        wait_listening(acme_port, pebble)
        stack_env = {
            **os.environ,
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "TRANSCODE_VAR_DIR": str(tmp_path / "var"),
            "TRANSCODE_DATABASE_URL": "",
            "TRANSCODE_STORAGE_URL": "",
            "STACK_COMPONENTS": "nginx",
            "TRANSCODE_HTTPS_PORT": str(https_port),
            "TRANSCODE_HTTP_PORT": str(http_port),
            "ACME_SERVER": f"https://127.0.0.1:{acme_port}/dir",
            "REQUESTS_CA_BUNDLE": str(ca_pem),
            "CERTBOT_DIR": str(tmp_path / "letsencrypt"),
        }
        up = subprocess.run([str(PROJECT_ROOT / "scripts" / "stack.sh"), "up"], env=stack_env,
                            capture_output=True, text=True, timeout=240)  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"env": stack_env, "https_port": https_port, "root": tmp_path}
    finally:
        if stack_env is not None:
            subprocess.run([str(PROJECT_ROOT / "scripts" / "stack.sh"), "down"], env=stack_env, capture_output=True)
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def setup_ssl(acme: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROJECT_ROOT / "scripts" / "setup_ssl"), *args], env=acme["env"],
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def test_certificate_from_pebble_is_served_and_renewed(acme: dict) -> None:
    before = served_certificate(acme["https_port"])
    assert "Pebble" not in before.issuer.rfc4514_string(), "starts on the local CA's leaf"

    obtained = setup_ssl(acme, "obtain", DOMAIN, "ops@transcode.test")
    assert obtained.returncode == 0, obtained.stdout + obtained.stderr
    issued = served_certificate(acme["https_port"])
    assert "Pebble" in issued.issuer.rfc4514_string(), issued.issuer.rfc4514_string()
    names = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == [DOMAIN]

    renewed = setup_ssl(acme, "renew", "--force")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    again = served_certificate(acme["https_port"])
    assert "Pebble" in again.issuer.rfc4514_string()
    assert again.serial_number != issued.serial_number, "the renewal must reload NGINX with the new certificate"
