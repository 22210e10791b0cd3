"""POST /api/upload with real files: good clips become pending jobs, hostile or
broken ones are refused with the right status, and the scratch directory is
empty after every request, whatever its outcome."""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from include.jobs.db import session_scope
from include.jobs.models import Job
from tests import media_fixtures as mf

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed"
)


@pytest.fixture(scope="module")
def clips(media_dir: Path) -> dict[str, Path]:
    return {
        container: mf.make_clip(media_dir, width=320, height=180, seconds=1, fps=25, container=container)
        for container in ("mp4", "mov", "mkv", "webm")
    }


def scratch_files(settings) -> list[Path]:
    return sorted(settings.scratch_dir.glob("*")) if settings.scratch_dir.exists() else []


def upload(client, settings, key, path: Path | bytes, filename: str = "clip.mp4", headers=None, **fields):
    data = dict(fields)
    body = path.read_bytes() if isinstance(path, Path) else path
    data["file"] = (io.BytesIO(body), filename)
    response = client.post(
        "/api/upload", data=data, headers={**key.headers, **(headers or {})}, content_type="multipart/form-data"
    )
    # Every request, accepted or not, leaves nothing behind in scratch.
    assert scratch_files(settings) == []
    return response


def job_count(settings) -> int:
    with session_scope(settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(Job))


@pytest.mark.parametrize("container", ["mp4", "mov", "mkv", "webm"])
def test_good_upload_creates_a_pending_job(client, settings, storage, keys, clips, container):
    alice, _ = keys
    source = clips[container]
    response = upload(client, settings, alice, source, filename=f"My Holiday (1).{container}",
                      priority="7", metadata=json.dumps({"title": "Holiday", "tags": ["a", "b"]}))  # fmt: skip
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    job_id = body["job_id"]
    assert body["status"] == "pending"
    assert body["priority"] == 7
    assert body["progress"] == 0
    assert body["metadata"] == {"title": "Holiday", "tags": ["a", "b"]}
    assert body["source_name"] == f"My_Holiday_1_.{container}"
    assert body["outputs"] is None and body["created_at"].endswith("Z")
    key = f"sources/{job_id}/My_Holiday_1_.{container}"
    assert storage.list(f"sources/{job_id}/") == [key]
    assert storage.get_bytes(key) == source.read_bytes()
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert (job.owner_key_id, job.source_key, job.source_size) == (alice.id, key, source.stat().st_size)
        assert job.probe["video"]["width"] == 320 and job.probe["demuxer"] in {"mov", "matroska"}


def test_default_priority_and_empty_metadata(client, settings, keys, clips):
    response = upload(client, settings, keys[0], clips["mp4"])
    assert response.status_code == 200
    assert response.get_json()["priority"] == 5 and response.get_json()["metadata"] == {}


def test_path_traversal_filename_stays_inside_storage(client, settings, storage, keys, clips, tmp_path):
    response = upload(client, settings, keys[0], clips["mp4"], filename="../../etc/passwd")
    assert response.status_code == 200
    job_id = response.get_json()["job_id"]
    assert response.get_json()["source_name"] == "passwd"
    [key] = storage.list(f"sources/{job_id}/")
    assert key == f"sources/{job_id}/passwd"
    written = [p for p in tmp_path.rglob("passwd")]
    assert written == [storage.root / key]
    assert not (storage.root.parent / "etc").exists() and not (tmp_path / "etc").exists()


@pytest.mark.parametrize("maker", ["pdf", "hls", "ffconcat", "empty", "text"])
def test_not_a_video_is_415(client, settings, storage, keys, media_dir, tmp_path, maker):
    marker = f"SECRET-{uuid.uuid4().hex}"
    secret = tmp_path / "credentials.txt"
    secret.write_text(marker)
    path = {
        "pdf": lambda: mf.make_pdf_disguised(media_dir),
        "hls": lambda: mf.make_hls_disguised(tmp_path, secret),
        "ffconcat": lambda: mf.make_ffconcat_disguised(tmp_path, secret),
        "empty": lambda: mf.make_empty(media_dir),
        "text": lambda: b"just some notes, definitely not a video\n",
    }[maker]()
    response = upload(client, settings, keys[0], path, filename="video.mp4")
    assert response.status_code == 415, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert marker not in error["message"] and str(secret) not in error["message"]
    assert job_count(settings) == 0
    assert storage.list("sources/") == []


@pytest.mark.parametrize("maker", [mf.make_truncated_mp4, mf.make_truncated_moov_missing])
def test_truncated_video_is_422(client, settings, storage, keys, media_dir, maker):
    response = upload(client, settings, keys[0], maker(media_dir), filename="cut.mp4")
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "invalid_media"
    assert "truncated" in error["message"] or "could not be read" in error["message"]
    assert str(media_dir) not in error["message"]
    assert job_count(settings) == 0 and storage.list("sources/") == []


def test_video_over_the_limits_is_422(make_app, settings, keys, clips):
    client = make_app(max_width=160, max_height=90).test_client()
    response = upload(client, settings, keys[0], clips["mp4"])
    assert response.status_code == 422
    assert "largest supported size is 160x90" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("priority", ["0", "11", "abc", "-1", "5.0", "", " 5", "1e1"])
def test_bad_priority_is_400(client, settings, keys, clips, priority):
    response = upload(client, settings, keys[0], clips["mp4"], priority=priority)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_priority"
    assert job_count(settings) == 0


@pytest.mark.parametrize(
    ("metadata", "status"),
    [
        ("[1, 2]", 400),
        ('"title"', 400),
        ("42", 400),
        ("null", 400),
        ("{not json", 400),
        ('{"a": NaN}', 400),
        ('{"a": 1e999}', 400),
        ('{"a": {"b": {"c": {"d": 1}}}}', 400),  # depth 4
        ('{"a": [[1]]}', 200),  # depth 3: object, list, list
        ('{"a": [[[1]]]}', 400),
        ('{"a": {"b": {"c": 1}}}', 200),  # depth 3 is allowed
        ("[" * 5000 + "]" * 5000, 400),
        (json.dumps({"notes": "x" * 11 * 1024}), 413),
        (json.dumps({"notes": "x" * 10_000}), 200),
    ],
)
def test_metadata_validation(client, settings, keys, clips, metadata, status):
    response = upload(client, settings, keys[0], clips["mp4"], metadata=metadata)
    assert response.status_code == status, response.get_data(as_text=True)
    if status != 200:
        assert response.get_json()["error"]["code"] in {"invalid_metadata", "metadata_too_large"}
        assert job_count(settings) == 0


def test_body_over_the_upload_limit_is_413(make_app, settings, storage, keys, clips):
    client = make_app(max_upload_bytes=4096).test_client()
    response = upload(client, settings, keys[0], clips["mp4"])
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload_too_large" and "4096 bytes" in error["message"]
    assert job_count(settings) == 0 and storage.list("sources/") == []


def test_upload_limit_comes_from_the_environment(monkeypatch, settings, keys, clips):
    from api import create_app

    monkeypatch.setenv("TRANSCODE_MAX_UPLOAD_BYTES", "2048")
    app = create_app({"TESTING": True})
    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    response = upload(app.test_client(), settings, keys[0], clips["mp4"])
    assert response.status_code == 413


def test_idempotency_key_returns_the_same_job(client, settings, storage, keys, clips):
    alice, bob = keys
    headers = {"Idempotency-Key": "upload-123"}
    first = upload(client, settings, alice, clips["mp4"], headers=headers)
    second = upload(client, settings, alice, clips["mov"], filename="other.mov", headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.get_json()["job_id"] == second.get_json()["job_id"]
    assert job_count(settings) == 1
    assert len(storage.list("sources/")) == 1
    # Keys are per caller: the same header from another key is another job.
    third = upload(client, settings, bob, clips["mp4"], headers=headers)
    assert third.status_code == 200 and third.get_json()["job_id"] != first.get_json()["job_id"]
    assert job_count(settings) == 2


@pytest.mark.parametrize("value", ["x" * 201, "has space", "tab\there", "ünï"])
def test_bad_idempotency_key_is_400(client, settings, keys, clips, value):
    response = upload(client, settings, keys[0], clips["mp4"], headers={"Idempotency-Key": value.encode().decode("latin-1")})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_idempotency_key"


def test_missing_file_is_400(client, keys):
    alice, _ = keys
    for kwargs in (
        {"data": {"priority": "5"}, "content_type": "multipart/form-data"},
        {"json": {"file": "clip.mp4"}},
        {"data": {"file": "not a file part"}, "content_type": "multipart/form-data"},
    ):
        response = client.post("/api/upload", headers=alice.headers, **kwargs)
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "missing_file"


def test_file_parts_stream_to_scratch_files(app, settings, clips):
    """The upload is written to a file in settings.scratch_dir while parsing
    (not to memory, not to the system temp dir), and removed on close."""
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(method="POST", path="/api/upload",
                             data={"file": (io.BytesIO(clips["mp4"].read_bytes()), "a.mp4")})  # fmt: skip
    with app.request_context(builder.get_environ()):
        from flask import request

        stream = request.files["file"].stream
        path = request.scratch_path(stream)
        assert path.parent == settings.scratch_dir
        assert path.read_bytes() == clips["mp4"].read_bytes()
    assert not path.exists()
    assert scratch_files(settings) == []


def test_line_breaks_in_a_large_file_do_not_trip_the_form_memory_cap(client, settings, keys):
    """werkzeug keeps a partial boundary (everything after a trailing CR/LF)
    in its parser buffer; that buffer must not count as 'form memory'."""
    chunk = bytes(range(256)) * 255 + b"\r"  # 65281 bytes ending in CR
    response = upload(client, settings, keys[0], chunk * 40, filename="noise.mp4")
    assert response.status_code == 415  # parsed completely, then refused as not a video
