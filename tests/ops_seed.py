"""Seed data for the operations tests and benchmark: jobs in every state and
age, rendition rows, and real published HLS in object storage.

The HLS is a real (tiny) fMP4 ladder made by ffmpeg from lavfi sources, so
the drill's decode check decodes real media. Job rows are written through
the repository and then back-dated with plain UPDATEs: the state machine
has no business with timestamps from last year.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, pool, text, update

from include.jobs import repository
from include.jobs.db import dispose_engines, get_engine, migrate, session_scope
from include.jobs.models import Job, RenditionRun, utcnow
from include.storage import Storage

RENDITION = {
    "encoder": "libx264", "ffmpeg_version": "5.1", "command": ["ffmpeg", "-i", "in.mp4", "out.mp4"],
    "host": "seed", "encode_seconds": 1.5,
}  # fmt: skip
SOURCE_BYTES = 4096


def make_hls_tree(dest: Path) -> Path:
    """A real fMP4 HLS ladder (one 160x90 rung with audio, 4 s): master + media playlist + init + 2 segments."""
    if (dest / "master.m3u8").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", "testsrc=size=160x90:rate=10:duration=4",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
         "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-g", "20", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "32k",
         "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
         "-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", f"{dest}/%v/seg_%05d.m4s",
         "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,a:0,name:90p", f"{dest}/%v/index.m3u8"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return dest


def hls_files(tree: Path) -> list[tuple[str, Path]]:
    """(relative key under hls/, file) for every file of the tree."""
    return sorted((p.relative_to(tree).as_posix(), p) for p in tree.rglob("*") if p.is_file())


# --------------------------------------------------------------------------
# databases of our own on the shared test server
# --------------------------------------------------------------------------


def _admin(server_url: str):
    return create_engine(server_url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")


def with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, name: str) -> str:
    engine = _admin(server_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    dispose_engines()
    engine = _admin(server_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@contextmanager
def own_database(server_url: str, prefix: str = "ops_test") -> Iterator[str]:
    """A fresh, migrated database on the shared server, dropped afterwards.

    Other tests truncate the session database's tables, so operations tests
    never use it directly.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = create_database(server_url, name)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(server_url, name)


def list_databases(server_url: str, like: str) -> list[str]:
    engine = _admin(server_url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": like})]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------


def add_job(
    url: str,
    storage: Storage,
    *,
    status: str,
    age_days: float,
    hls_tree: Path | None = None,
    now: datetime | None = None,
    template: str | None = None,
) -> str:
    """One job in ``status`` that reached it ``age_days`` ago, with its objects.

    completed: source, published HLS, poster. failed/cancelled: source and a
    staged rendition. pending/queued/processing: source (+ staging when
    processing). ``template`` copies another job's published HLS instead of
    uploading ``hls_tree`` again (cheap on local storage: hard links).
    """
    now = now or utcnow()
    moment = now - timedelta(days=age_days)
    with session_scope(url) as session:
        job = repository.create_job(session, source_name="clip.mp4", source_size=SOURCE_BYTES)
        job_id = job.id
        source = f"sources/{job_id}/clip.mp4"
        values: dict = {"status": status, "source_key": source, "created_at": moment - timedelta(minutes=5),
                        "updated_at": moment}  # fmt: skip
        if status in {"completed", "failed", "cancelled"}:
            values["finished_at"] = moment
        if status in {"processing", "completed", "failed", "cancelled"}:
            values["started_at"] = moment - timedelta(minutes=4)
        if status == "completed":
            values["outputs"] = {"master_key": f"processed/{job_id}/hls/master.m3u8",
                                 "poster_key": f"processed/{job_id}/poster.jpg"}  # fmt: skip
            values["progress"] = 100.0
        if status == "failed":
            values["error"] = "seeded failure"
        session.execute(update(Job).where(Job.id == job_id).values(**values))
        if status in {"completed", "processing", "failed"}:
            for name, height in (("90p", 90), ("audio", None)):
                repository.record_rendition(session, job_id, name, **RENDITION, height=height, size_bytes=1000)
    storage.put_bytes(source, (job_id.encode() * (SOURCE_BYTES // 32 + 1))[:SOURCE_BYTES])
    if status == "completed":
        if template is not None:
            for key in storage.list(f"processed/{template}/"):
                storage.copy(key, f"processed/{job_id}/" + key[len(f"processed/{template}/"):])
        else:
            assert hls_tree is not None, "completed jobs need an HLS tree or a template job"
            for rel, path in hls_files(hls_tree):
                storage.put_file(f"processed/{job_id}/hls/{rel}", path)
            storage.put_bytes(f"processed/{job_id}/poster.jpg", b"\xff\xd8\xff\xe0" + job_id.encode() * 40)
    if status in {"processing", "failed"}:
        storage.put_bytes(f"work/{job_id}/renditions/90p.mp4", b"staged" * 100)
    return job_id


def seed_bulk(url: str, storage: Storage, n_jobs: int, hls_tree: Path, *, published: int | None = None) -> dict[str, int]:
    """``n_jobs`` jobs in a realistic mix (~85 % completed) with 4 rendition rows
    each, inserted in bulk; the first ``published`` completed jobs (default:
    all) get real HLS, sources and posters in storage (copies of one
    template job)."""
    now = utcnow()
    statuses = (["completed"] * 17) + ["failed", "cancelled", "processing"]
    jobs, renditions = [], []
    for i in range(n_jobs):
        job_id = uuid.uuid4().hex
        status = statuses[i % len(statuses)]
        moment = now - timedelta(days=(i % 200), minutes=i % 1440)
        jobs.append({
            "id": job_id, "status": status, "priority": 1 + i % 10, "source_key": f"sources/{job_id}/clip.mp4",
            "source_name": "clip.mp4", "source_size": SOURCE_BYTES, "metadata": {"seed": i}, "progress": 100.0,
            "probe": {"duration_s": 4.0, "video": {"width": 160, "height": 90}},
            "plan": {"renditions": [{"name": "90p"}], "audio": {"bitrate_k": 32}},
            "outputs": {"master_key": f"processed/{job_id}/hls/master.m3u8"} if status == "completed" else None,
            "error": "seeded failure" if status == "failed" else None,
            "created_at": moment - timedelta(minutes=5), "updated_at": moment, "started_at": moment - timedelta(minutes=4),
            "finished_at": moment if status != "processing" else None,
        })  # fmt: skip
        for name, height in (("1080p", 1080), ("720p", 720), ("360p", 360), ("audio", None)):
            renditions.append({"job_id": job_id, "rendition": name, **RENDITION, "fell_back": False, "height": height,
                               "width": None if height is None else height * 16 // 9, "size_bytes": 10_000,
                               "bitrate_kbps": 1000, "finished_at": moment})  # fmt: skip
    engine = get_engine(url)
    with engine.begin() as conn:
        for start in range(0, len(jobs), 2000):
            conn.execute(Job.__table__.insert(), jobs[start:start + 2000])
        for start in range(0, len(renditions), 8000):
            conn.execute(RenditionRun.__table__.insert(), renditions[start:start + 8000])
    completed = [j["id"] for j in jobs if j["status"] == "completed"]
    limit = len(completed) if published is None else min(published, len(completed))
    template = None
    for job_id in completed[:limit]:
        if template is None:
            for rel, path in hls_files(hls_tree):
                storage.put_file(f"processed/{job_id}/hls/{rel}", path)
            storage.put_bytes(f"processed/{job_id}/poster.jpg", b"\xff\xd8\xff\xe0" * 64)
            storage.put_bytes(f"sources/{job_id}/clip.mp4", b"s" * SOURCE_BYTES)
            template = job_id
            continue
        for key in storage.list(f"processed/{template}/"):
            storage.copy(key, f"processed/{job_id}/" + key[len(f"processed/{template}/"):])
        storage.copy(f"sources/{template}/clip.mp4", f"sources/{job_id}/clip.mp4")
    return {"jobs": len(jobs), "renditions": len(renditions), "completed": len(completed), "published": limit}
