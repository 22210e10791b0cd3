"""Intake benchmarks on a private copy of the local stack (tests/stack.py).

post-to-running
    Wall time from the HTTP upload (POST /api/upload) to the job's
    transcode_video run running its first task (status ``processing``), at
    default settings (SQLite, 2 s poll). Target: p95 <= 10 s.
upload-rss
    Resident memory growth of the gunicorn worker while a 2 GB upload
    streams through it. Target: <= 100 MB.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder

from include.jobs.db import session_scope
from security.api_keys import create_api_key
from tests.stack import Stack, start_stack, wait_for

LATENCY_TARGET_S = 10.0
RSS_TARGET_MB = 100.0
UPLOAD_BYTES = 2 * 1024**3


def small_clip(directory: Path) -> Path:
    clip = directory / "tiny.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)  # fmt: skip
    return clip


def big_upload(directory: Path, size: int = UPLOAD_BYTES) -> Path:
    """A valid MP4 padded to ``size`` with a trailing ISO BMFF ``free`` box (sparse on disk)."""
    clip = small_clip(directory)
    target = directory / "big.mp4"
    data = clip.read_bytes()
    pad = size - len(data)
    with target.open("wb") as fh:
        fh.write(data)
        # 64-bit box: size=1, type, largesize; then the padding itself.
        fh.write((1).to_bytes(4, "big") + b"free" + pad.to_bytes(8, "big"))
        fh.truncate(size)
    return target


def api_key(stack: Stack) -> str:
    with session_scope(f"sqlite:///{stack.root / 'transcode.db'}") as session:
        return create_api_key(session, "bench")[1]


def bench_post_to_running(stack: Stack, key: str, clip: Path, samples: int) -> dict:
    latencies = []
    for _ in range(samples):
        start = time.monotonic()
        with clip.open("rb") as fh:
            response = requests.post(f"{stack.api_url}/api/upload", headers={"X-API-Key": key},
                                     files={"file": ("tiny.mp4", fh)}, timeout=120)  # fmt: skip
        response.raise_for_status()
        job_id = response.json()["job_id"]

        def status() -> str:
            return requests.get(f"{stack.api_url}/api/jobs/{job_id}", headers={"X-API-Key": key}, timeout=30).json()["status"]

        wait_for(lambda: status() in ("processing", "completed", "failed"), 120, interval=0.1, what="the run to start")
        latencies.append(time.monotonic() - start)
        wait_for(lambda: status() in ("completed", "failed"), 300, what="the job to finish")
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    return {"samples": samples, "p50_s": statistics.median(latencies), "p95_s": p95, "max_s": latencies[-1]}


def gunicorn_workers(stack: Stack) -> list[psutil.Process]:
    master = psutil.Process(int((stack.root / "run" / "api.pid").read_text()))
    return master.children(recursive=True)


def bench_upload_rss(stack: Stack, key: str, workdir: Path) -> dict:
    video = big_upload(workdir)
    workers = gunicorn_workers(stack)
    before = {w.pid: w.memory_info().rss for w in workers}
    peak = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for worker in workers:
                try:
                    peak[worker.pid] = max(peak[worker.pid], worker.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    with video.open("rb") as fh:
        body = MultipartEncoder(fields={"file": ("big.mp4", fh, "video/mp4")})
        response = requests.post(f"{stack.api_url}/api/upload", data=body, timeout=1800,
                                 headers={"X-API-Key": key, "Content-Type": body.content_type})  # fmt: skip
    seconds = time.monotonic() - start
    done.set()
    sampler.join()
    video.unlink()
    growth = max(peak[pid] - before[pid] for pid in before) / 1024**2
    return {"status": response.status_code, "upload_mb": UPLOAD_BYTES / 1024**2, "seconds": seconds,
            "rss_growth_mb": growth, "mb_per_s": UPLOAD_BYTES / 1024**2 / seconds}  # fmt: skip


def bench_intake(repeat: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        root = Path(tmp)
        stack = start_stack(root / "stack")
        try:
            key = api_key(stack)
            clip = small_clip(root)
            # The first pickup run starts once the scheduler has parsed the DAGs.
            bench_post_to_running(stack, key, clip, 1)
            latency = bench_post_to_running(stack, key, clip, 20)
            rss = bench_upload_rss(stack, key, root)
        finally:
            stack.run("down")
    return {"latency": latency, "rss": rss}


def print_intake(result: dict) -> None:
    lat, rss = result["latency"], result["rss"]
    print(f"\n== post-to-running: HTTP upload → transcode_video running ({lat['samples']} jobs, default settings)")
    print(f"{'':<28}{'target':>10}{'measured':>10}{'ratio':>8}")
    print(f"{'p95 latency (s)':<28}{LATENCY_TARGET_S:>10.1f}{lat['p95_s']:>10.2f}{lat['p95_s'] / LATENCY_TARGET_S:>8.3f}")
    print(f"{'p50 latency (s)':<28}{'':>10}{lat['p50_s']:>10.2f}")
    print(f"\n== upload-rss: 2 GB upload through gunicorn (HTTP {rss['status']}, {rss['mb_per_s']:.0f} MB/s)")
    print(f"{'worker RSS growth (MB)':<28}{RSS_TARGET_MB:>10.1f}{rss['rss_growth_mb']:>10.1f}"
          f"{rss['rss_growth_mb'] / RSS_TARGET_MB:>8.3f}")  # fmt: skip
