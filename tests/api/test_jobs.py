"""/api/jobs: listing, filters, ownership, statistics, cancel and delete,
against a real (SQLite) database and local storage."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from include.jobs import repository
from include.jobs.db import session_scope
from include.jobs.models import Job
from include.jobs.states import JobStatus
from security import signed_urls
from tests.api.conftest import HLS_SECRET

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_job(settings, owner, *, minutes: int = 0, status: JobStatus = JobStatus.PENDING,
             run_seconds: float | None = None, name: str = "clip.mp4") -> str:  # fmt: skip
    """A job row made through the repository, as the API and pipeline would."""
    with session_scope(settings.database_url) as session:
        job = repository.create_job(session, source_name=name, owner_key_id=owner.id, priority=5,
                                    metadata={"n": minutes})  # fmt: skip
        job.created_at = T0 + timedelta(minutes=minutes)
        job_id = job.id
        session.flush()
        if status is JobStatus.QUEUED:
            repository.transition(session, job_id, JobStatus.QUEUED)
        elif status is not JobStatus.PENDING:
            repository.transition(session, job_id, JobStatus.PROCESSING)
            if status is JobStatus.COMPLETED:
                repository.set_outputs(session, job_id, {
                    "master_key": f"processed/{job_id}/hls/master.m3u8",
                    "master_url": "file:///internal/path/master.m3u8",
                    "poster_key": f"processed/{job_id}/poster.jpg",
                    "renditions": [{"name": "720p", "width": 1280, "height": 720, "bitrate_kbps": 3000}],
                })  # fmt: skip
            if status is not JobStatus.PROCESSING:
                repository.transition(session, job_id, status, error="boom" if status is JobStatus.FAILED else None)
            if run_seconds is not None:
                job = repository.get_job(session, job_id)
                job.started_at = T0
                job.finished_at = T0 + timedelta(seconds=run_seconds)
    return job_id


def all_job_ids(settings) -> set[str]:
    with session_scope(settings.database_url) as session:
        return set(session.execute(select(Job.id)).scalars())


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------


def test_list_is_newest_first_and_paginated(client, settings, keys):
    alice, bob = keys
    ids = [make_job(settings, alice, minutes=m) for m in range(5)]
    make_job(settings, bob, minutes=10)
    body = client.get("/api/jobs", headers=alice.headers).get_json()
    assert [j["job_id"] for j in body["jobs"]] == ids[::-1]
    assert (body["limit"], body["offset"], body["total"]) == (20, 0, 5)
    pages = [client.get(f"/api/jobs?limit=2&offset={o}", headers=alice.headers).get_json() for o in (0, 2, 4, 6)]
    assert [[j["job_id"] for j in p["jobs"]] for p in pages] == [ids[4:2:-1], ids[2:0:-1], ids[0:1], []]
    assert all(p["total"] == 5 and p["limit"] == 2 for p in pages)
    job = body["jobs"][0]
    assert set(job) == {"job_id", "status", "priority", "progress", "error", "source_name", "metadata",
                        "created_at", "updated_at", "started_at", "finished_at", "outputs"}  # fmt: skip
    assert job["created_at"] == "2026-01-01T12:04:00.000Z"


def test_status_filter(client, settings, keys):
    alice, _ = keys
    pending = make_job(settings, alice, minutes=1)
    failed = make_job(settings, alice, minutes=2, status=JobStatus.FAILED)
    for status, expected in (("pending", [pending]), ("failed", [failed]), ("completed", [])):
        body = client.get(f"/api/jobs?status={status}", headers=alice.headers).get_json()
        assert [j["job_id"] for j in body["jobs"]] == expected
        assert body["total"] == len(expected)
    assert client.get("/api/jobs?status=failed", headers=alice.headers).get_json()["jobs"][0]["error"] == "boom"


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=-1", "limit=abc", "limit=", "limit=1.5", "offset=-1", "offset=x",
     "offset=99999999999", "status=done", "status=", "status=PENDING"],
)  # fmt: skip
def test_bad_query_parameters_are_400(client, keys, query):
    response = client.get(f"/api/jobs?{query}", headers=keys[0].headers)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    if query.startswith("status"):
        assert "pending, queued, processing, completed, failed, cancelled" in error["message"]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "' OR 1=1--"},
        {"status": "pending' OR '1'='1"},
        {"status": "pending; DROP TABLE jobs;--"},
        {"limit": "1; DROP TABLE jobs"},
        {"offset": "0 OR 1=1"},
        {"limit": "1 UNION SELECT key_hash FROM api_keys"},
    ],
)
def test_sql_metacharacters_are_rejected_and_change_nothing(client, settings, keys, query):
    alice, bob = keys
    mine = make_job(settings, alice)
    make_job(settings, bob)
    before = all_job_ids(settings)
    response = client.get("/api/jobs", query_string=query, headers=alice.headers)
    assert response.status_code == 400
    assert all_job_ids(settings) == before
    # The caller still sees exactly its own job.
    assert [j["job_id"] for j in client.get("/api/jobs", headers=alice.headers).get_json()["jobs"]] == [mine]


@pytest.mark.parametrize("job_id", ["x' OR '1'='1", "1 OR 1=1", "%27%20OR%201=1--", "ABCDEF0123456789ABCDEF0123456789",
                                    "0123456789abcdef0123456789abcde", "stats2"])  # fmt: skip
def test_malformed_job_ids_are_404(client, settings, keys, job_id):
    alice, _ = keys
    make_job(settings, alice)
    before = all_job_ids(settings)
    for method in ("GET", "DELETE"):
        response = client.open(f"/api/jobs/{job_id}", method=method, headers=alice.headers)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
    assert all_job_ids(settings) == before


# --------------------------------------------------------------------------
# One job, ownership
# --------------------------------------------------------------------------


def test_get_own_job_and_outputs_links(client, settings, keys):
    alice, _ = keys
    pending = make_job(settings, alice)
    done = make_job(settings, alice, status=JobStatus.COMPLETED)
    body = client.get(f"/api/jobs/{pending}", headers=alice.headers).get_json()
    assert body["job_id"] == pending and body["status"] == "pending" and body["outputs"] is None
    before = int(time.time())
    body = client.get(f"/api/jobs/{done}", headers=alice.headers).get_json()
    assert body["status"] == "completed" and body["progress"] == 100
    assert body["started_at"].endswith("Z") and body["finished_at"].endswith("Z")
    outputs = body["outputs"]
    for field, path in (("master_url", "master.m3u8"), ("poster_url", "poster.jpg")):
        # Signed for the whole job prefix, valid TRANSCODE_HLS_URL_TTL_S (6 h by default).
        match = re.fullmatch(rf"https://media\.example\.test/hls/([A-Za-z0-9_-]{{22}})/([0-9]+)/{done}/{re.escape(path)}",
                             outputs.pop(field))  # fmt: skip
        assert match, field
        expires = int(match[2])
        assert before + 6 * 3600 <= expires <= int(time.time()) + 6 * 3600
        assert match[1] == signed_urls.token(done, expires, HLS_SECRET)
    assert outputs == {
        "master_key": f"processed/{done}/hls/master.m3u8",
        "poster_key": f"processed/{done}/poster.jpg",
        "duration_s": None,
        "renditions": [{"name": "720p", "width": 1280, "height": 720, "bitrate_kbps": 3000}],
    }


def test_another_keys_job_is_404_never_403(client, settings, keys):
    alice, bob = keys
    theirs = make_job(settings, bob)
    finished = make_job(settings, bob, status=JobStatus.COMPLETED)
    for job_id in (theirs, finished):
        for method in ("GET", "DELETE"):
            response = client.open(f"/api/jobs/{job_id}", method=method, headers=alice.headers)
            assert response.status_code == 404
            assert response.get_json() == {"error": {"code": "not_found", "message": "No such job."}}
    assert client.get(f"/api/jobs/{theirs}", headers=bob.headers).get_json()["status"] == "pending"
    assert all_job_ids(settings) == {theirs, finished}
    assert client.get("/api/jobs", headers=alice.headers).get_json()["total"] == 0


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def test_stats_counts_and_durations(client, settings, keys):
    alice, bob = keys
    for seconds in (10, 20, 30, 40):
        make_job(settings, alice, status=JobStatus.COMPLETED, run_seconds=seconds)
    make_job(settings, alice)
    make_job(settings, alice, status=JobStatus.QUEUED)
    make_job(settings, alice, status=JobStatus.FAILED, run_seconds=999)
    make_job(settings, bob, status=JobStatus.COMPLETED, run_seconds=5000)
    body = client.get("/api/jobs/stats", headers=alice.headers).get_json()
    assert body["counts"] == {"pending": 1, "queued": 1, "processing": 0, "completed": 4, "failed": 1, "cancelled": 0}
    assert body["total"] == 7
    assert body["durations"] == {"count": 4, "avg_seconds": 25.0, "p50_seconds": 25.0, "p95_seconds": 38.5}


def test_stats_without_completed_jobs(client, keys):
    body = client.get("/api/jobs/stats", headers=keys[0].headers).get_json()
    assert body["total"] == 0
    assert body["durations"] == {"count": 0, "avg_seconds": None, "p50_seconds": None, "p95_seconds": None}


# --------------------------------------------------------------------------
# Cancel and delete
# --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING])
def test_delete_cancels_an_unfinished_job(client, settings, storage, keys, status):
    alice, _ = keys
    job_id = make_job(settings, alice, status=status)
    storage.put_bytes(f"sources/{job_id}/clip.mp4", b"source")
    response = client.delete(f"/api/jobs/{job_id}", headers=alice.headers)
    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled" and response.get_json()["finished_at"]
    with session_scope(settings.database_url) as session:
        assert repository.get_job(session, job_id).status == "cancelled"
    assert storage.exists(f"sources/{job_id}/clip.mp4")  # cancelling keeps everything
    # A second DELETE deletes the now final job.
    assert client.delete(f"/api/jobs/{job_id}", headers=alice.headers).status_code == 204
    assert storage.list(f"sources/{job_id}/") == []
    assert client.get(f"/api/jobs/{job_id}", headers=alice.headers).status_code == 404


def test_delete_completed_job_removes_its_objects_and_row(client, settings, storage, keys):
    alice, _ = keys
    job_id = make_job(settings, alice, status=JobStatus.COMPLETED)
    other = make_job(settings, alice, status=JobStatus.COMPLETED)
    with session_scope(settings.database_url) as session:
        repository.record_rendition(session, job_id, "720p", encoder="libx264", ffmpeg_version="x", command=["ffmpeg"],
                                    host="h", encode_seconds=1.0)  # fmt: skip
    keys_of = {
        jid: [f"sources/{jid}/clip.mp4", f"processed/{jid}/hls/master.m3u8", f"processed/{jid}/hls/720p/seg_0.m4s",
              f"processed/{jid}/poster.jpg", f"work/{jid}/renditions/720p.mp4"]
        for jid in (job_id, other)
    }  # fmt: skip
    for key in keys_of[job_id] + keys_of[other]:
        storage.put_bytes(key, b"x")
    response = client.delete(f"/api/jobs/{job_id}", headers=alice.headers)
    assert response.status_code == 204
    assert response.get_data() == b"" and "Content-Type" not in response.headers
    assert not any(storage.exists(k) for k in keys_of[job_id])
    assert all(storage.exists(k) for k in keys_of[other])
    assert all_job_ids(settings) == {other}
    with session_scope(settings.database_url) as session:
        assert repository.list_renditions(session, job_id) == []
        assert session.scalar(select(func.count()).select_from(Job)) == 1
    assert client.delete(f"/api/jobs/{job_id}", headers=alice.headers).status_code == 404


def test_public_url_signs_published_keys(app):
    from api.urls import public_url

    job = "0123456789abcdef0123456789abcdef"
    with app.app_context():
        for key, path in ((f"processed/{job}/hls/master.m3u8", "master.m3u8"),
                          (f"processed/{job}/hls/720p/seg_1.m4s", "720p/seg_1.m4s"),
                          (f"processed/{job}/poster.jpg", "poster.jpg")):  # fmt: skip
            url = public_url(key)
            prefix, _, rest = url.partition("/hls/")
            token, expires, rest = rest.split("/", 2)
            assert prefix == "https://media.example.test" and rest == f"{job}/{path}"
            assert token == signed_urls.token(job, int(expires), HLS_SECRET)


def test_signed_url_ttl_is_configurable(make_app):
    from api.urls import public_url

    job = "0123456789abcdef0123456789abcdef"
    with make_app(hls_url_ttl_s=60).app_context():
        expires = int(public_url(f"processed/{job}/hls/master.m3u8").split("/")[5])
    assert abs(expires - (time.time() + 60)) <= 2


def test_signed_url_without_secret_is_an_error(app, monkeypatch):
    from api.urls import public_url
    from security.secrets import SecretUnavailable, clear_cache

    monkeypatch.delenv("TRANSCODE_HLS_SIGNING_SECRET")
    clear_cache()
    with app.app_context(), pytest.raises(SecretUnavailable):
        public_url("processed/0123456789abcdef0123456789abcdef/hls/master.m3u8")


def test_public_url_rejects_unpublished_keys(app):
    from api.urls import public_url
    from include.errors import StorageKeyError

    job = "0123456789abcdef0123456789abcdef"
    with app.app_context():
        for private in (f"sources/{job}/clip.mp4", f"work/{job}/hls/master.m3u8", f"processed/{job}/other.txt",
                        "processed/not-a-job/hls/master.m3u8"):  # fmt: skip
            with pytest.raises(ValueError):
                public_url(private)
        with pytest.raises(StorageKeyError):  # not even a valid key
            public_url(f"processed/{job}/hls/../../../etc/passwd")
