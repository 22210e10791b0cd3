"""The real transcode_video DAG, end to end, through dag.test().

Each case runs ``scripts/run_pipeline.py`` in a fresh process (the same path
``make demo`` takes) against real ffmpeg and real clips, then re-checks the
published HLS independently (tests/hls_checks.py).

Backends: the embedded default (SQLite + files) and PostgreSQL + S3. The S3
endpoint is moto in server mode, a stand-in for MinIO (no MinIO server can
be installed here); the real ``minio`` client talks to it over HTTP.
``TRANSCODE_TEST_S3_ENDPOINT`` points the same test at a real MinIO.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from include.config import PROJECT_ROOT
from tests import media_fixtures as mf
from tests.hls_checks import assert_valid_ladder
from tests.s3server import s3_credentials, s3_endpoint  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(900)


def run_pipeline(video: Path, env_overrides: dict[str, str]) -> dict:
    env = {**os.environ, **env_overrides}
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "run_pipeline.py"), "--json", str(video)],
        capture_output=True, text=True, env=env, timeout=600, cwd=PROJECT_ROOT,
    )  # fmt: skip
    summary_lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert summary_lines, f"no summary (exit {proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads(summary_lines[-1])
    summary["last_line"] = proc.stdout.strip().splitlines()[-1]
    summary["returncode"] = proc.returncode
    return summary


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


def local_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"TRANSCODE_VAR_DIR": str(tmp_path / "var"), "TRANSCODE_DATABASE_URL": "", "TRANSCODE_STORAGE_URL": "", **extra}


def probe_display(path: Path) -> tuple[tuple[int, int], float]:
    from include.media.probe import probe

    result = probe(path)
    return (result.video.display_width, result.video.display_height), result.duration_s


def assert_completed(summary: dict) -> Path:
    assert summary["status"] == "completed", summary.get("error")
    assert summary["returncode"] == 0
    assert summary["last_line"].startswith("master: ")
    master = Path(summary["last_line"].removeprefix("master: "))
    assert master.is_file()
    for name, task in summary["tasks"].items():
        assert task["state"] in ("success", "skipped"), f"{name}: {task}"
    return master


def test_default_clip_embedded_backend(tmp_path: Path) -> None:
    video = mf.bbb_path()
    summary = run_pipeline(video, local_env(tmp_path))
    master = assert_completed(summary)
    display, duration = probe_display(video)
    checks = assert_valid_ladder(master, display, duration)
    assert [c.height for c in checks][0] == 720  # never upscaled past the 720p source
    assert (master.parent.parent / "poster.jpg").stat().st_size > 1000
    names = {r["name"] for r in summary["renditions"]}
    assert "audio" in names, "audio is encoded once, as its own rendition"
    # Provenance: every rendition records the encoder, ffmpeg version, command and host.
    from include.jobs import repository
    from include.jobs.db import session_scope

    url = f"sqlite:///{tmp_path / 'var' / 'transcode.db'}"
    with session_scope(url) as session:
        for run in repository.list_renditions(session, summary["job_id"]):
            assert run.encoder == "libx264" and run.ffmpeg_version and run.host
            assert run.command[0] == "ffmpeg" and "-protocol_whitelist" in run.command
    # Staging is cleaned once the job is published.
    assert not (tmp_path / "var" / "storage" / "work").exists() or not any((tmp_path / "var" / "storage" / "work").rglob("*.*"))


@pytest.mark.parametrize(
    ("container", "kwargs"),
    [
        ("mov", {"width": 640, "height": 360, "rotate": 90}),
        ("mkv", {"width": 854, "height": 480, "fps": 30}),
        ("webm", {"width": 640, "height": 360, "audio": True}),
        ("mp4", {"width": 640, "height": 360, "audio": False}),
    ],
    ids=["mov-portrait", "mkv", "webm-vp9-opus", "mp4-video-only"],
)
def test_containers_and_orientation(tmp_path: Path, clips: Path, container: str, kwargs: dict) -> None:
    video = mf.make_clip(clips, container=container, seconds=7, **kwargs)
    summary = run_pipeline(video, local_env(tmp_path, TRANSCODE_ENCODE_UNITS="2"))
    master = assert_completed(summary)
    display, duration = probe_display(video)
    checks = assert_valid_ladder(master, display, duration)
    if kwargs.get("rotate"):
        assert all(c.height > c.width for c in checks), "portrait source must give a portrait ladder"
    text = master.read_text()
    if kwargs.get("audio", True):
        assert 'AUDIO="aac"' in text and "mp4a.40.2" in text
    else:
        assert "EXT-X-MEDIA" not in text and "mp4a" not in text
    transcode_tasks = [name for name in summary["tasks"] if name.startswith("transcode_cpu[")]
    assert len(transcode_tasks) == 2, "TRANSCODE_ENCODE_UNITS=2 maps two transcode tasks"


def test_postgres_and_s3_backend(tmp_path: Path, pg_url: str, s3_endpoint: str) -> None:  # noqa: F811
    from include.jobs.db import migrate

    migrate(pg_url)
    access, secret = s3_credentials()
    env = local_env(
        tmp_path,
        TRANSCODE_DATABASE_URL=pg_url,
        TRANSCODE_STORAGE_URL="s3://transcode-e2e",
        TRANSCODE_S3_ENDPOINT=s3_endpoint,
        TRANSCODE_S3_ACCESS_KEY=access,
        TRANSCODE_S3_SECRET_KEY=secret,
    )
    video = mf.bbb_path()
    summary = run_pipeline(video, env)
    assert summary["status"] == "completed", summary.get("error")
    assert summary["last_line"] == f"master: s3://transcode-e2e/processed/{summary['job_id']}/hls/master.m3u8"
    # Download what was published and check it like any other output.
    from include.storage.s3 import S3Storage

    storage = S3Storage("transcode-e2e", s3_endpoint, "us-east-1", s3_endpoint.startswith("https"), access, secret)
    prefix = f"processed/{summary['job_id']}/"
    keys = storage.list(prefix)
    assert f"{prefix}poster.jpg" in keys
    assert not storage.list(f"work/{summary['job_id']}/"), "staging must be cleaned after publishing"
    for key in keys:
        storage.get_file(key, tmp_path / "dl" / key[len(prefix):])
    display, duration = probe_display(video)
    assert_valid_ladder(tmp_path / "dl" / "hls" / "master.m3u8", display, duration)
    from include.jobs import repository
    from include.jobs.db import session_scope

    with session_scope(pg_url) as session:
        job = repository.get_job(session, summary["job_id"])
        assert job.status == "completed" and job.progress == 100
        assert job.outputs["master_key"] == f"{prefix}hls/master.m3u8"


HOSTILE = {
    "hls-playlist-as-mp4": (lambda d, secret: mf.make_hls_disguised(d, secret), "playlist"),
    "ffconcat-as-mp4": (lambda d, secret: mf.make_ffconcat_disguised(d, secret), "concat"),
    "truncated-mp4": (lambda d, secret: mf.make_truncated_mp4(d), "truncated"),
    "truncated-no-moov": (lambda d, secret: mf.make_truncated_moov_missing(d), "truncated"),
    "pdf-as-mp4": (lambda d, secret: mf.make_pdf_disguised(d), "pdf"),
    "empty-file": (lambda d, secret: mf.make_empty(d), "empty"),
    "8192x8192": (lambda d, secret: mf.make_huge_dimensions(d), "8192"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_fails_fast_without_retries(tmp_path: Path, clips: Path, case: str) -> None:
    marker = f"SECRET-MARKER-{case}-7c1e"
    secret = tmp_path / "secret.txt"
    secret.write_text(marker * 50)
    make, expected = HOSTILE[case]
    video = make(clips, secret)
    summary = run_pipeline(video, local_env(tmp_path))
    assert summary["status"] == "failed"
    assert expected in summary["error"].lower(), summary["error"]
    probe_task = summary["tasks"]["probe"]
    assert probe_task == {"state": "failed", "try_number": 1}, "bad input must not burn retries"
    assert summary["last_line"].startswith("master: none")
    for path in (tmp_path / "var").rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), f"{path} contains bytes of another file"


def _ffmpeg_processes(marker: str) -> set[int]:
    """Live ffmpeg processes whose command line mentions ``marker`` (this test's scratch)."""
    import psutil

    pids = set()
    for proc in psutil.process_iter(["name", "status", "cmdline"]):
        if (proc.info["name"] == "ffmpeg" and proc.info["status"] != psutil.STATUS_ZOMBIE
                and marker in " ".join(proc.info["cmdline"] or [])):  # fmt: skip
            pids.add(proc.pid)
    return pids


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killing_the_task_process_leaves_no_ffmpeg(tmp_path: Path, clips: Path, sig: str) -> None:
    """dag.test() runs tasks in the calling process, so signalling it signals the task.

    SIGKILL: nothing in the process runs; the kernel kills ffmpeg (parent-death
    signal). SIGTERM: Airflow turns it into a task failure; our cleanup kills
    ffmpeg at once (dag.test would then retry, so the test stops it there).
    """
    import signal
    import time

    import psutil

    video = mf.make_clip(clips, width=1280, height=720, seconds=60, fps=25)
    env = {**os.environ, **local_env(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "scripts" / "run_pipeline.py"), str(video)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT)  # fmt: skip
    try:
        encoder = None
        deadline = time.monotonic() + 120
        while encoder is None and time.monotonic() < deadline:
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if child.name() == "ffmpeg" and "-filter_complex" in child.cmdline():
                        encoder = child
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.2)
        assert encoder is not None, "the transcode never started"
        proc.send_signal(getattr(signal, sig))

        def encoder_gone() -> bool:
            try:
                return not encoder.is_running() or encoder.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        gone_deadline = time.monotonic() + 15
        while not encoder_gone() and time.monotonic() < gone_deadline:
            time.sleep(0.1)
        assert encoder_gone(), f"ffmpeg outlived its task ({sig})"
        if sig == "SIGTERM":
            proc.kill()
        proc.wait(timeout=30)
        time.sleep(1)
        assert _ffmpeg_processes(str(tmp_path)) == set()
    finally:
        if proc.poll() is None:
            proc.kill()
