"""The transcode-flow CLI: key management straight on the database, and the
HTTP commands against the real app served by werkzeug on a free port."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from api import cli
from include.jobs import repository
from include.jobs.db import session_scope
from include.jobs.states import JobStatus
from security.api_keys import authenticate
from tests import media_fixtures as mf

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed"
)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------
# apikey
# --------------------------------------------------------------------------


def test_apikey_create_prints_the_key_alone_on_the_last_line(capsys, settings):
    code, out, err = run(capsys, "apikey", "create", "ci-bot")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("created key ") and lines[0].endswith(" for ci-bot")
    key = lines[-1]
    assert key.startswith("tf_") and " " not in key
    assert key not in err and out.count(key) == 1
    with session_scope(settings.database_url) as session:
        row = authenticate(session, key)
        assert row is not None and row.name == "ci-bot"
        assert lines[0] == f"created key {row.id} for ci-bot"


def test_apikey_list_and_revoke(capsys, settings, keys):
    alice, bob = keys
    code, out, _ = run(capsys, "apikey", "list")
    assert code == 0
    assert alice.id in out and bob.id in out and "active" in out
    assert alice.key not in out and bob.key not in out
    code, out, _ = run(capsys, "apikey", "revoke", bob.id)
    assert code == 0 and bob.id in out
    with session_scope(settings.database_url) as session:
        assert authenticate(session, bob.key) is None
        assert authenticate(session, alice.key) is not None
    assert "revoked" in run(capsys, "apikey", "list")[1]
    code, _, err = run(capsys, "apikey", "revoke", "f" * 32)
    assert code == 1 and "no API key" in err


def test_apikey_create_migrates_a_fresh_database(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSCODE_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh' / 'new.db'}")
    code, out, _ = run(capsys, "apikey", "create", "first")
    assert code == 0 and out.strip().splitlines()[-1].startswith("tf_")


# --------------------------------------------------------------------------
# HTTP commands against a live server
# --------------------------------------------------------------------------


@pytest.fixture
def server(app) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def clip(media_dir):
    return mf.make_clip(media_dir, width=320, height=180, seconds=1)


@needs_ffmpeg
def test_submit_status_and_list(capsys, monkeypatch, settings, storage, server, keys, clip):
    alice, bob = keys
    monkeypatch.setenv("TRANSCODE_API_URL", server)
    monkeypatch.setenv("TRANSCODE_API_KEY", alice.key)
    code, out, err = run(capsys, "submit", str(clip), "--priority", "8", "--metadata", '{"title": "t"}')
    assert code == 0, err
    job_id = out.split()[1]
    assert out.strip() == f"job {job_id} pending (priority 8)"
    with session_scope(settings.database_url) as session:
        job = repository.get_job(session, job_id, alice.id)
        assert (job.priority, job.metadata_, job.source_name) == (8, {"title": "t"}, clip.name)
    assert storage.exists(f"sources/{job_id}/{clip.name}")

    code, out, _ = run(capsys, "status", job_id)
    assert code == 0
    assert json.loads(out)["job_id"] == job_id and json.loads(out)["priority"] == 8

    code, out, _ = run(capsys, "list", "--status", "pending")
    assert code == 0 and job_id in out and clip.name in out
    code, out, _ = run(capsys, "list", "--status", "completed")
    assert code == 0 and job_id not in out

    # Another key cannot see it; the CLI reports the API's JSON error.
    code, _, err = run(capsys, "status", job_id, "--key", bob.key)
    assert code == 1 and "HTTP 404 not_found" in err


def test_http_errors_are_reported_not_raised(capsys, monkeypatch, server, tmp_path):
    monkeypatch.delenv("TRANSCODE_API_KEY", raising=False)
    code, _, err = run(capsys, "list", "--url", server)
    assert code == 1 and "no API key" in err
    code, _, err = run(capsys, "list", "--url", server, "--key", "tf_nope")
    assert code == 1 and "HTTP 401 unauthorized" in err
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code, _, err = run(capsys, "status", "0" * 32, "--url", f"http://127.0.0.1:{closed}", "--key", "tf_x")
    assert code == 1 and "cannot reach the API" in err
    code, _, err = run(capsys, "submit", str(tmp_path / "missing.mp4"), "--url", server, "--key", "tf_x")
    assert code == 1 and "is not a file" in err
    (tmp_path / "a.mp4").write_bytes(b"x")
    code, _, err = run(capsys, "submit", str(tmp_path / "a.mp4"), "--metadata", "[1]", "--url", server, "--key", "tf_x")
    assert code == 1 and "--metadata must be a JSON object" in err


def _pipeline_stand_in(settings, owner_id: str, final: JobStatus, done: threading.Event) -> None:
    """Does what the Airflow pipeline does to a job row (no Airflow here): claim
    it, report progress, then finish it, through the real repository."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with session_scope(settings.database_url) as session:
            jobs = repository.list_jobs(session, owner_key_id=owner_id, status=JobStatus.PENDING)
        if jobs:
            break
        time.sleep(0.05)
    else:
        return
    job_id = jobs[0].id
    with session_scope(settings.database_url) as session:
        repository.transition(session, job_id, JobStatus.QUEUED)
        repository.transition(session, job_id, JobStatus.PROCESSING)
        repository.set_progress(session, job_id, 40.0)
    time.sleep(0.3)
    with session_scope(settings.database_url) as session:
        if final is JobStatus.COMPLETED:
            repository.set_outputs(session, job_id, {"master_key": f"processed/{job_id}/hls/master.m3u8",
                                                     "poster_key": None, "renditions": []})  # fmt: skip
            repository.transition(session, job_id, JobStatus.COMPLETED)
        else:
            repository.transition(session, job_id, final, error="The file is corrupt.")
    done.set()


@needs_ffmpeg
@pytest.mark.parametrize(("final", "exit_code"), [(JobStatus.COMPLETED, 0), (JobStatus.FAILED, 1)])
def test_submit_wait_follows_the_job_to_the_end(capsys, monkeypatch, settings, server, keys, clip, final, exit_code):
    alice, _ = keys
    monkeypatch.setattr(cli, "POLL_INTERVAL_S", 0.1)
    done = threading.Event()
    worker = threading.Thread(target=_pipeline_stand_in, args=(settings, alice.id, final, done), daemon=True)
    worker.start()
    code, out, err = run(capsys, "submit", str(clip), "--wait", "--url", server, "--key", alice.key)
    worker.join(timeout=30)
    assert done.is_set()
    assert code == exit_code, err
    assert "%" in err and "[" in err  # the progress bar went to stderr
    job_id = out.split()[1]
    if final is JobStatus.COMPLETED:
        assert re.fullmatch(rf"master: https://media\.example\.test/hls/[A-Za-z0-9_-]{{22}}/[0-9]+/{job_id}/master\.m3u8",
                            out.strip().splitlines()[-1])  # signed URL  # fmt: skip
    else:
        assert "master:" not in out
        assert f"job {job_id} failed: The file is corrupt." in err
