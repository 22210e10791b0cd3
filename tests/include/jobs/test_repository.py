"""Repository, models and migrations against real SQLite and PostgreSQL.

Every test runs twice: on a fresh SQLite file and on the session's throw-away
PostgreSQL server (tests/pg.py), whose rows are wiped before each test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from include.errors import IllegalTransition, JobNotFound
from include.jobs import repository as repo
from include.jobs.db import (
    current_revision,
    dispose_engines,
    get_engine,
    head_revision,
    migrate,
    session_scope,
)
from include.jobs.models import ApiKey, Base, Job, RenditionRun
from include.jobs.states import JobStatus

BACKENDS = ["sqlite", "postgresql"]


def _raw_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(name)


def _drop_everything(url: str) -> None:
    engine = get_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database with no tables at all (PostgreSQL: dropped, then left migrated)."""
    url = _raw_url(request)
    if request.param == "postgresql":
        _drop_everything(url)
    yield url
    if request.param == "postgresql":
        migrate(url)  # leave the shared server usable for other tests
    dispose_engines()


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated, empty database."""
    url = _raw_url(request)
    migrate(url)
    with get_engine(url).begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    yield url
    dispose_engines()


def _key(session, name: str = "k") -> str:
    key = ApiKey(name=name, key_hash=f"{name:0>64}"[-64:])
    session.add(key)
    session.flush()
    return key.id


def _processing_job(url: str, **kwargs) -> str:
    with session_scope(url) as s:
        job = repo.create_job(s, source_name="a.mp4", **kwargs)
        repo.transition(s, job.id, JobStatus.PROCESSING)
        return job.id


RENDITION = dict(
    encoder="libx264",
    ffmpeg_version="6.1",
    command=["ffmpeg", "-i", "in.mp4", "out.mp4"],
    host="worker-1",
    encode_seconds=1.5,
)


# --- migrations -------------------------------------------------------------


def test_migrate_empty_database_reaches_head_and_is_idempotent(empty_url: str) -> None:
    assert current_revision(empty_url) is None
    migrate(empty_url)
    assert current_revision(empty_url) == head_revision() == "0002"
    tables = set(inspect(get_engine(empty_url)).get_table_names())
    assert {"api_keys", "jobs", "rendition_runs", "alembic_version"} <= tables

    migrate(empty_url)  # second run: no-op, no error
    assert current_revision(empty_url) == head_revision()


def test_migrations_match_models(url: str) -> None:
    """The hand-written migration and the ORM models describe the same schema."""
    with get_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrate_creates_missing_sqlite_directory(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'deeper' / 'still' / 'app.db'}"
    migrate(url)
    assert current_revision(url) == head_revision()
    with get_engine(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    dispose_engines()


def test_get_engine_is_cached_per_url(url: str) -> None:
    assert get_engine(url) is get_engine(url)


# --- create / get -------------------------------------------------------------


def test_create_job_defaults(url: str) -> None:
    with session_scope(url) as s:
        job = repo.create_job(s, source_name="clip.mp4")
        job_id = job.id
    with session_scope(url) as s:
        job = repo.get_job(s, job_id)
        assert len(job.id) == 32 and int(job.id, 16) >= 0
        assert job.status == JobStatus.PENDING == "pending"
        assert job.priority == 5
        assert job.metadata_ == {}
        assert job.progress == 0
        assert job.source_key is None and job.owner_key_id is None
        assert job.probe is None and job.plan is None and job.outputs is None
        assert job.started_at is None and job.finished_at is None
        for stamp in (job.created_at, job.updated_at):
            assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
            assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)


def test_create_job_with_everything_and_set_source_key_later(url: str) -> None:
    with session_scope(url) as s:
        owner = _key(s)
        job = repo.create_job(
            s,
            source_name="My Film.mov",
            priority=9,
            owner_key_id=owner,
            metadata={"title": "Ünïcode", "tags": ["a", "b"]},
            source_size=5 * 1024**3,  # needs BigInteger
            job_id="f" * 32,
        )
        assert job.id == "f" * 32
        repo.set_source_key(s, job.id, f"sources/{job.id}/my_film.mov")
    with session_scope(url) as s:
        job = repo.get_job(s, "f" * 32, owner_key_id=owner)
        assert job.source_key == f"sources/{'f' * 32}/my_film.mov"
        assert job.metadata_ == {"title": "Ünïcode", "tags": ["a", "b"]}
        assert job.source_size == 5 * 1024**3
        assert job.priority == 9


@pytest.mark.parametrize("priority", [0, 11, -1])
def test_create_job_rejects_priority_out_of_range(url: str, priority: int) -> None:
    with session_scope(url) as s, pytest.raises(ValueError, match="priority"):
        repo.create_job(s, source_name="a.mp4", priority=priority)


def test_get_job_hides_other_owners_jobs(url: str) -> None:
    with session_scope(url) as s:
        alice, bob = _key(s, "alice"), _key(s, "bob")
        job_id = repo.create_job(s, source_name="a.mp4", owner_key_id=alice).id
    with session_scope(url) as s:
        assert repo.get_job(s, job_id, owner_key_id=alice).id == job_id
        assert repo.get_job(s, job_id).id == job_id
        with pytest.raises(JobNotFound):
            repo.get_job(s, job_id, owner_key_id=bob)
        with pytest.raises(JobNotFound):
            repo.get_job(s, "0" * 32)


def test_owner_must_exist(url: str) -> None:
    with pytest.raises(IntegrityError):
        with session_scope(url) as s:
            repo.create_job(s, source_name="a.mp4", owner_key_id="nobody")


def test_idempotency_key_returns_the_first_job_per_owner(url: str) -> None:
    with session_scope(url) as s:
        alice, bob = _key(s, "alice"), _key(s, "bob")
        first = repo.create_job(s, source_name="a.mp4", owner_key_id=alice, idempotency_key="req-1")
        again = repo.create_job(s, source_name="b.mp4", owner_key_id=alice, idempotency_key="req-1")
        other = repo.create_job(s, source_name="a.mp4", owner_key_id=bob, idempotency_key="req-1")
        assert again.id == first.id and again.source_name == "a.mp4"
        assert other.id != first.id
    with session_scope(url) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 2


def test_idempotency_key_race_creates_one_job(url: str) -> None:
    """The second request runs while the first is still uncommitted."""
    with session_scope(url) as s:
        owner = _key(s)
    inserted = threading.Event()
    results: dict[str, object] = {}

    def second() -> None:
        inserted.wait(10)
        try:
            with session_scope(url) as s2:
                results["second"] = repo.create_job(
                    s2, source_name="b.mp4", owner_key_id=owner, idempotency_key="k1"
                ).id
        except Exception as exc:  # surfaced by the assert below
            results["second"] = exc

    worker = threading.Thread(target=second)
    worker.start()
    with session_scope(url) as s:
        first = repo.create_job(s, source_name="a.mp4", owner_key_id=owner, idempotency_key="k1")
        inserted.set()
        time.sleep(0.3)  # let the second request reach its (blocking) insert
    worker.join(30)
    assert results["second"] == first.id
    with session_scope(url) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1


def test_naive_datetimes_are_refused(url: str) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        with session_scope(url) as s:
            s.add(ApiKey(name="n", key_hash="a" * 64, created_at=datetime(2024, 1, 1)))
            s.flush()


# --- transitions --------------------------------------------------------------


def test_happy_path_timestamps_and_progress(url: str) -> None:
    with session_scope(url) as s:
        job_id = repo.create_job(s, source_name="a.mp4").id
    with session_scope(url) as s:
        job = repo.transition(s, job_id, JobStatus.QUEUED)
        assert job.status == "queued" and job.started_at is None
    with session_scope(url) as s:
        job = repo.transition(s, job_id, "processing")
        assert job.started_at is not None and job.finished_at is None
        started = job.started_at
        assert repo.set_progress(s, job_id, 42.5) is True
    with session_scope(url) as s:
        job = repo.transition(s, job_id, JobStatus.COMPLETED)
        assert job.progress == 100 and job.finished_at is not None
    with session_scope(url) as s:
        job = repo.get_job(s, job_id)
        assert job.status == "completed" and job.progress == 100
        assert job.started_at == started
        assert job.finished_at >= job.started_at
        assert job.updated_at >= job.created_at


def test_failure_records_error_and_rerun_clears_it(url: str) -> None:
    job_id = _processing_job(url)
    with session_scope(url) as s:
        repo.set_progress(s, job_id, 30)
        job = repo.transition(s, job_id, JobStatus.FAILED, error="ffmpeg exited 1")
        assert job.error == "ffmpeg exited 1" and job.finished_at is not None
        assert job.progress == 30
    with session_scope(url) as s:
        job = repo.transition(s, job_id, JobStatus.PROCESSING)  # rerun from the UI
        assert job.error is None and job.finished_at is None and job.progress == 0
    with session_scope(url) as s:
        job = repo.get_job(s, job_id)
        assert (job.status, job.error, job.finished_at, job.progress) == ("processing", None, None, 0)


def test_completed_job_can_be_reprocessed(url: str) -> None:
    job_id = _processing_job(url)
    with session_scope(url) as s:
        first_start = repo.transition(s, job_id, JobStatus.COMPLETED).started_at
    time.sleep(0.01)
    with session_scope(url) as s:
        job = repo.transition(s, job_id, JobStatus.PROCESSING)
        assert job.started_at > first_start and job.progress == 0 and job.finished_at is None


def test_processing_reentry_keeps_run_clock_and_progress(url: str) -> None:
    job_id = _processing_job(url)
    with session_scope(url) as s:
        repo.set_progress(s, job_id, 55)
        started = repo.get_job(s, job_id).started_at
    with session_scope(url) as s:
        job = repo.transition(s, job_id, JobStatus.PROCESSING)
        assert job.started_at == started and job.progress == 55


def test_transition_with_explicit_progress_is_clamped(url: str) -> None:
    job_id = _processing_job(url)
    with session_scope(url) as s:
        assert repo.transition(s, job_id, JobStatus.FAILED, progress=250).progress == 100


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], JobStatus.COMPLETED),
        ([JobStatus.CANCELLED], JobStatus.PROCESSING),
        ([JobStatus.PROCESSING, JobStatus.COMPLETED], JobStatus.FAILED),
        ([JobStatus.QUEUED], JobStatus.QUEUED),
    ],
    ids=["pending->completed", "cancelled->processing", "completed->failed", "queued->queued"],
)
def test_illegal_transition_raises_and_changes_nothing(
    url: str, path: list[JobStatus], illegal: JobStatus
) -> None:
    with session_scope(url) as s:
        job_id = repo.create_job(s, source_name="a.mp4").id
        for step in path:
            repo.transition(s, job_id, step)
    with session_scope(url) as s:
        before = repo.get_job(s, job_id)
        status, updated = before.status, before.updated_at
    with session_scope(url) as s:
        with pytest.raises(IllegalTransition, match=f"to '{illegal.value}'"):
            repo.transition(s, job_id, illegal)
    with session_scope(url) as s:
        after = repo.get_job(s, job_id)
        assert (after.status, after.updated_at) == (status, updated)


def test_transition_unknown_job_and_unknown_status(url: str) -> None:
    with session_scope(url) as s:
        with pytest.raises(JobNotFound):
            repo.transition(s, "0" * 32, JobStatus.CANCELLED)
        job_id = repo.create_job(s, source_name="a.mp4").id
        with pytest.raises(ValueError, match="unknown job status"):
            repo.transition(s, job_id, "done")


def test_concurrent_transitions_do_not_overwrite_each_other(url: str) -> None:
    """Cancel arrives while 'completed' is uncommitted: the cancel must see
    completed (and be refused), not overwrite it.

    PostgreSQL: the cancel blocks on the row lock. SQLite: its compare-and-set
    UPDATE waits for the write lock, matches no row, and re-reads.
    """
    job_id = _processing_job(url)
    started = threading.Event()
    outcome: dict[str, object] = {}

    def cancel() -> None:
        started.set()
        try:
            with session_scope(url) as s2:
                repo.transition(s2, job_id, JobStatus.CANCELLED)
                outcome["result"] = "cancelled"
        except Exception as exc:
            outcome["result"] = exc

    with session_scope(url) as s:
        repo.transition(s, job_id, JobStatus.COMPLETED)
        worker = threading.Thread(target=cancel)
        worker.start()
        started.wait(10)
        time.sleep(0.3)  # the cancel is now waiting on our lock
    worker.join(30)
    assert isinstance(outcome["result"], IllegalTransition), outcome
    with session_scope(url) as s:
        assert repo.get_job(s, job_id).status == "completed"


# --- progress -------------------------------------------------------------------


def test_progress_is_clamped_monotonic_and_only_while_processing(url: str) -> None:
    with session_scope(url) as s:
        job_id = repo.create_job(s, source_name="a.mp4").id
        assert repo.set_progress(s, job_id, 10) is False  # pending: ignored
        assert repo.get_job(s, job_id).progress == 0
    job_id2 = _processing_job(url)
    with session_scope(url) as s:
        assert repo.set_progress(s, job_id2, 40) is True
        assert repo.get_job(s, job_id2).progress == 40  # the session's copy is fresh
        assert repo.set_progress(s, job_id2, 35) is False  # never backwards
        assert repo.set_progress(s, job_id2, 40) is False
        assert repo.set_progress(s, job_id2, 140) is True
        assert repo.get_job(s, job_id2).progress == 100
    with session_scope(url) as s:
        repo.transition(s, job_id2, JobStatus.CANCELLED)
    with session_scope(url) as s:
        assert repo.set_progress(s, job_id2, 100) is False
        with pytest.raises(JobNotFound):
            repo.set_progress(s, "0" * 32, 5)
        with pytest.raises(ValueError):
            repo.set_progress(s, job_id2, float("nan"))


def test_negative_progress_clamps_to_zero(url: str) -> None:
    job_id = _processing_job(url)
    with session_scope(url) as s:
        assert repo.set_progress(s, job_id, -5) is False  # 0 is not above 0
        assert repo.get_job(s, job_id).progress == 0


# --- artefacts -----------------------------------------------------------------


def test_probe_plan_outputs_and_run_id_round_trip(url: str) -> None:
    probe = {"format": {"duration": 5.0}, "streams": [{"codec_type": "video", "width": 1280}]}
    plan = {"renditions": [{"name": "720p", "height": 720}], "audio": True}
    outputs = {"master": "processed/x/hls/master.m3u8", "poster": None}
    with session_scope(url) as s:
        job_id = repo.create_job(s, source_name="a.mp4").id
        repo.set_probe(s, job_id, probe)
        repo.set_plan(s, job_id, plan)
        repo.set_outputs(s, job_id, outputs)
        repo.set_airflow_run_id(s, job_id, "manual__2024-01-01T00:00:00+00:00")
    with session_scope(url) as s:
        job = repo.get_job(s, job_id)
        assert (job.probe, job.plan, job.outputs) == (probe, plan, outputs)
        assert job.airflow_run_id == "manual__2024-01-01T00:00:00+00:00"
        with pytest.raises(JobNotFound):
            repo.set_probe(s, "0" * 32, probe)


def test_record_rendition_upserts_and_lists(url: str) -> None:
    with session_scope(url) as s:
        job_id = repo.create_job(s, source_name="a.mp4").id
        run = repo.record_rendition(s, job_id, "720p", **RENDITION, width=1280, height=720)
        assert run.fell_back is False and run.finished_at.tzinfo is not None
        repo.record_rendition(s, job_id, "360p", **RENDITION)
    with session_scope(url) as s:
        run = repo.record_rendition(
            s,
            job_id,
            "720p",
            **{**RENDITION, "encoder": "h264_nvenc"},
            fell_back=True,
            fallback_reason="no CUDA device",
            size_bytes=6 * 1024**3,
            bitrate_kbps=3000,
        )
        assert run.encoder == "h264_nvenc" and run.width == 1280  # untouched fields kept
    with session_scope(url) as s:
        runs = repo.list_renditions(s, job_id)
        assert [r.rendition for r in runs] == ["360p", "720p"]
        hd = runs[1]
        assert hd.fell_back is True and hd.fallback_reason == "no CUDA device"
        assert hd.command == ["ffmpeg", "-i", "in.mp4", "out.mp4"]
        assert hd.size_bytes == 6 * 1024**3 and hd.bitrate_kbps == 3000
        assert s.scalar(select(func.count()).select_from(RenditionRun)) == 2


def test_record_rendition_validates(url: str) -> None:
    with session_scope(url) as s:
        job_id = repo.create_job(s, source_name="a.mp4").id
        with pytest.raises(TypeError, match="colour"):
            repo.record_rendition(s, job_id, "720p", **RENDITION, colour="red")
        with pytest.raises(JobNotFound):
            repo.record_rendition(s, "0" * 32, "720p", **RENDITION)


def test_delete_job_cascades_to_renditions(url: str) -> None:
    with session_scope(url) as s:
        owner = _key(s)
        job_id = repo.create_job(s, source_name="a.mp4", owner_key_id=owner).id
        keep_id = repo.create_job(s, source_name="b.mp4").id
        repo.record_rendition(s, job_id, "720p", **RENDITION)
        repo.record_rendition(s, keep_id, "720p", **RENDITION)
    with session_scope(url) as s:
        with pytest.raises(JobNotFound):
            repo.delete_job(s, job_id, owner_key_id=_key(s, "mallory"))
    with session_scope(url) as s:
        repo.delete_job(s, job_id, owner_key_id=owner)
    with session_scope(url) as s:
        with pytest.raises(JobNotFound):
            repo.get_job(s, job_id)
        with pytest.raises(JobNotFound):
            repo.delete_job(s, job_id)
        remaining = s.execute(select(RenditionRun.job_id)).scalars().all()
        assert remaining == [keep_id]


def test_database_cascade_without_the_orm(url: str) -> None:
    """ON DELETE CASCADE is in the schema (SQLite needs foreign_keys=ON)."""
    with session_scope(url) as s:
        job_id = repo.create_job(s, source_name="a.mp4").id
        repo.record_rendition(s, job_id, "720p", **RENDITION)
    with get_engine(url).begin() as conn:
        conn.execute(Job.__table__.delete().where(Job.__table__.c.id == job_id))
    with session_scope(url) as s:
        assert repo.list_renditions(s, job_id) == []


# --- claiming -------------------------------------------------------------------


def test_claim_skips_jobs_whose_source_is_not_stored_yet(url: str) -> None:
    with session_scope(url) as s:
        repo.create_job(s, source_name="uploading.mp4")
        ready = repo.create_job(s, source_name="ready.mp4", source_key="sources/r/ready.mp4").id
    with session_scope(url) as s:
        assert [j.id for j in repo.claim_pending(s, 10)] == [ready]


def test_claim_pending_orders_by_priority_then_age(url: str) -> None:
    with session_scope(url) as s:
        low_old = repo.create_job(s, source_key="sources/x/clip.mp4", source_name="low-old", priority=2).id
    time.sleep(0.002)
    with session_scope(url) as s:
        high = repo.create_job(s, source_key="sources/x/clip.mp4", source_name="high", priority=9).id
    time.sleep(0.002)
    with session_scope(url) as s:
        mid_old = repo.create_job(s, source_key="sources/x/clip.mp4", source_name="mid-old", priority=5).id
    time.sleep(0.002)
    with session_scope(url) as s:
        mid_new = repo.create_job(s, source_key="sources/x/clip.mp4", source_name="mid-new", priority=5).id
        cancelled = repo.create_job(s, source_key="sources/x/clip.mp4", source_name="gone", priority=10).id
        repo.transition(s, cancelled, JobStatus.CANCELLED)

    with session_scope(url) as s:
        first = repo.claim_pending(s, 2)
        assert [j.id for j in first] == [high, mid_old]
        assert all(j.status == "queued" for j in first)
    with session_scope(url) as s:
        assert [j.id for j in repo.claim_pending(s, 10)] == [mid_new, low_old]
        assert repo.claim_pending(s, 10) == []
        assert repo.claim_pending(s, 0) == []
    with session_scope(url) as s:
        assert repo.count_by_status(s)["queued"] == 4
        assert repo.get_job(s, cancelled).status == "cancelled"


def test_claim_pending_race_two_threads(url: str) -> None:
    """Two pickers claiming in loops never share a job and miss none."""
    with session_scope(url) as s:
        expected = {repo.create_job(s, source_key="sources/x/clip.mp4", source_name=f"{i}.mp4", priority=1 + i % 10).id for i in range(50)}
    start = threading.Barrier(2)
    claimed: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def picker(slot: int) -> None:
        try:
            start.wait(10)
            idle_rounds = 0
            while idle_rounds < 3:
                with session_scope(url) as s:
                    got = [j.id for j in repo.claim_pending(s, 3)]
                claimed[slot].extend(got)
                idle_rounds = 0 if got else idle_rounds + 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=picker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    union = claimed[0] + claimed[1]
    assert len(union) == len(set(union)) == 50
    assert set(union) == expected
    with session_scope(url) as s:
        assert repo.count_by_status(s)["queued"] == 50


# --- listing ----------------------------------------------------------------------


def test_list_jobs_filters_and_paginates(url: str) -> None:
    with session_scope(url) as s:
        alice, bob = _key(s, "alice"), _key(s, "bob")
    ids = []
    for i in range(5):
        with session_scope(url) as s:
            ids.append(repo.create_job(s, source_name=f"{i}.mp4", owner_key_id=alice).id)
        time.sleep(0.002)
    with session_scope(url) as s:
        bobs = repo.create_job(s, source_name="bob.mp4", owner_key_id=bob).id
        repo.transition(s, ids[0], JobStatus.CANCELLED)

    with session_scope(url) as s:
        newest_first = list(reversed(ids))
        assert [j.id for j in repo.list_jobs(s, owner_key_id=alice)] == newest_first
        assert [j.id for j in repo.list_jobs(s, owner_key_id=alice, limit=2)] == newest_first[:2]
        assert [j.id for j in repo.list_jobs(s, owner_key_id=alice, limit=2, offset=2)] == newest_first[2:4]
        assert [j.id for j in repo.list_jobs(s, owner_key_id=alice, status="cancelled")] == [ids[0]]
        assert [j.id for j in repo.list_jobs(s, owner_key_id=bob)] == [bobs]
        assert len(repo.list_jobs(s)) == 6
        assert repo.list_jobs(s, status=JobStatus.COMPLETED) == []


def test_count_by_status(url: str) -> None:
    with session_scope(url) as s:
        alice, bob = _key(s, "alice"), _key(s, "bob")
        a1 = repo.create_job(s, source_name="1", owner_key_id=alice).id
        repo.create_job(s, source_name="2", owner_key_id=alice)
        b1 = repo.create_job(s, source_name="3", owner_key_id=bob).id
        repo.transition(s, a1, JobStatus.PROCESSING)
        repo.transition(s, b1, JobStatus.FAILED, error="bad input")
    with session_scope(url) as s:
        everyone = repo.count_by_status(s)
        assert everyone == {
            "pending": 1, "queued": 0, "processing": 1,
            "completed": 0, "failed": 1, "cancelled": 0,
        }
        assert repo.count_by_status(s, owner_key_id=alice) == {
            "pending": 1, "queued": 0, "processing": 1,
            "completed": 0, "failed": 0, "cancelled": 0,
        }


def test_session_scope_rolls_back_on_error(url: str) -> None:
    with pytest.raises(RuntimeError):
        with session_scope(url) as s:
            repo.create_job(s, source_name="a.mp4")
            raise RuntimeError("boom")
    with session_scope(url) as s:
        assert repo.list_jobs(s) == []


def test_stale_queued_jobs_are_offered_again_once_per_interval(url: str) -> None:
    from datetime import timedelta

    from include.jobs.models import utcnow

    with session_scope(url) as s:
        job_id = repo.create_job(s, source_name="a.mp4", source_key="sources/a/a.mp4").id
        repo.claim_pending(s, 1)
    with session_scope(url) as s:
        assert repo.stale_queued(s, 600, 10) == [], "freshly claimed jobs are not stale"
        s.get(Job, job_id).updated_at = utcnow() - timedelta(minutes=11)
    with session_scope(url) as s:
        assert [j.id for j in repo.stale_queued(s, 600, 10)] == [job_id]
    with session_scope(url) as s:
        assert repo.stale_queued(s, 600, 10) == [], "offered once per interval"
