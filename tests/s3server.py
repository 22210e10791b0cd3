"""An S3 (and Secrets Manager) endpoint for tests.

STAND-IN: no MinIO (or AWS) server can be installed on this machine, so the
tests run against moto in server mode (``ThreadedMotoServer``) on 127.0.0.1.
It is a real HTTP server that speaks the S3 wire protocol, so the real
``minio`` client (SigV4, multipart uploads, listing, copies) and boto3's
Secrets Manager client are exercised end to end; only the server is a
stand-in. Set ``TRANSCODE_TEST_S3_ENDPOINT`` (e.g. ``http://127.0.0.1:9000``)
to run the same tests against a real MinIO, with its credentials in
``TRANSCODE_TEST_S3_ACCESS_KEY`` / ``TRANSCODE_TEST_S3_SECRET_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

# moto accepts any credentials; these only need to be non-empty.
MOTO_ACCESS_KEY = "testing"
MOTO_SECRET_KEY = "testing-secret"


def start_moto_server(use_configured: bool = True) -> tuple[str, Callable[[], None]]:
    """Start an S3 endpoint; returns ``(endpoint_url, stop)``.

    Stand-in for MinIO/S3 (see the module docstring): a moto server on
    127.0.0.1 and a free port, unless ``TRANSCODE_TEST_S3_ENDPOINT`` names a
    real endpoint, which is then used as is (and ``stop`` does nothing).
    ``use_configured=False`` always starts moto (for services that a real
    MinIO does not have, such as Secrets Manager).
    """
    real = os.environ.get("TRANSCODE_TEST_S3_ENDPOINT") if use_configured else None
    if real:
        return real.rstrip("/"), lambda: None

    from moto.server import ThreadedMotoServer

    # Port 0 lets the OS pick a free port at bind time, so parallel test runs
    # cannot race for the same one.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop


def is_stand_in() -> bool:
    """True when tests talk to moto rather than a real S3/MinIO."""
    return not os.environ.get("TRANSCODE_TEST_S3_ENDPOINT")


def s3_credentials() -> tuple[str, str]:
    """Access and secret key for the test endpoint."""
    if is_stand_in():
        return MOTO_ACCESS_KEY, MOTO_SECRET_KEY
    return (
        os.environ.get("TRANSCODE_TEST_S3_ACCESS_KEY", "minioadmin"),
        os.environ.get("TRANSCODE_TEST_S3_SECRET_KEY", "minioadmin"),
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Session-wide S3 endpoint URL (moto stand-in unless configured)."""
    url, stop = start_moto_server()
    try:
        yield url
    finally:
        stop()
