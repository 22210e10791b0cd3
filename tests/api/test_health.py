"""Liveness, readiness (real database and storage checks) and Prometheus metrics."""

from __future__ import annotations

import io
import shutil
import socket

import pytest

from include.jobs import repository
from include.jobs.db import session_scope
from tests import media_fixtures as mf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_when_database_and_storage_work(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}


def test_readyz_503_when_the_database_is_down(make_app, keys):
    # Nothing listens on this port: the connection is refused at once.
    dead = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/transcode"
    client = make_app(database_url=dead).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": {"database": "unavailable", "storage": "ok"}}
    assert b"127.0.0.1" not in response.data  # details stay in the server log
    # API calls answer 503 (not a 500) while the database is away.
    api = client.get("/api/jobs", headers=keys[0].headers)
    assert api.status_code == 503 and api.get_json()["error"]["code"] == "unavailable"
    assert api.headers["Retry-After"]
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_503_when_storage_is_gone(make_app, settings, tmp_path):
    missing = tmp_path / "gone"
    missing.mkdir()
    client = make_app(storage_url=missing.as_uri()).test_client()
    assert client.get("/readyz").status_code == 200
    shutil.rmtree(missing)  # e.g. the shared volume was unmounted
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "storage": "unavailable"}


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
def test_metrics_expose_request_and_upload_counters(client, keys, media_dir):
    alice, _ = keys
    clip = mf.make_clip(media_dir, width=320, height=180, seconds=1)
    client.get("/healthz")
    client.get("/api/jobs", headers=alice.headers)
    client.get("/api/jobs")
    client.get("/totally/unknown/path")
    client.post("/api/upload", headers=alice.headers, content_type="multipart/form-data",
                data={"file": (io.BytesIO(clip.read_bytes()), "clip.mp4")})  # fmt: skip
    client.post("/api/upload", headers=alice.headers, content_type="multipart/form-data",
                data={"file": (io.BytesIO(b"%PDF-1.4 nope"), "x.mp4")})  # fmt: skip
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert 'transcode_api_requests_total{endpoint="/healthz",method="GET",status="200"}' in text
    assert 'transcode_api_requests_total{endpoint="/api/jobs",method="GET",status="401"}' in text
    assert 'transcode_api_requests_total{endpoint="<unmatched>",method="GET",status="404"}' in text
    assert "/totally/unknown/path" not in text  # raw paths never become labels
    assert 'transcode_api_request_duration_seconds_bucket{endpoint="/api/jobs",le="0.1",method="GET",status="200"}' in text
    assert 'transcode_api_uploads_total{outcome="accepted"}' in text
    assert 'transcode_api_uploads_total{outcome="rejected"}' in text
    assert "transcode_api_upload_bytes_total" in text
    bytes_line = next(line for line in text.splitlines() if line.startswith("transcode_api_upload_bytes_total "))
    assert float(bytes_line.split()[1]) >= clip.stat().st_size


def test_gunicorn_config_serves_the_app_and_sums_worker_metrics(settings, keys, tmp_path):
    """gunicorn.conf.py as deployed (gthread, 2 workers), on a free port: the
    app answers, /metrics adds up both worker processes' counters, and the
    app's own INFO lines reach gunicorn's log."""
    import os
    import re
    import subprocess
    import sys
    import time
    import urllib.request

    from include.config import PROJECT_ROOT

    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", "api.wsgi:app"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        for _ in range(40):  # spread over both workers
            urllib.request.urlopen(f"{base}/healthz?secret=hunter2", timeout=5).read()
        with session_scope(settings.database_url) as session:
            job_id = repository.create_job(session, source_name="a.mp4", owner_key_id=keys[0].id).id
        cancel = urllib.request.Request(f"{base}/api/jobs/{job_id}", method="DELETE", headers=keys[0].headers)
        assert urllib.request.urlopen(cancel, timeout=5).status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            text = response.read().decode()
        match = re.search(r'transcode_api_requests_total\{endpoint="/healthz",method="GET",status="200"\} (\S+)', text)
        assert match and float(match.group(1)) >= 41
        assert len(list((tmp_path / "prom").glob("counter_*.db"))) >= 1
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode()
    assert "GET /healthz HTTP/1.1" in output  # the access log...
    assert "hunter2" not in output  # ...without query strings
    assert f"job {job_id} cancelled by key {keys[0].id}" in output
    assert keys[0].key not in output
