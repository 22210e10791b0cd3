"""`make demo`: one video through the whole product, the way a user sends it.

Starts the local stack if it is not running (and stops it again afterwards
unless KEEP_STACK=1), creates an API key, uploads the video over HTTP, polls
the job while pickup_jobs and transcode_video run in Airflow, prints the
rendition table and, as the last line, ``master: <path or URL>``.

    python scripts/demo.py [VIDEO]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from include.config import PROJECT_ROOT
from include.jobs.db import migrate, session_scope
from include.storage import get_storage
from security.api_keys import create_api_key

sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
from run_pipeline import default_video, print_table  # noqa: E402

API = os.environ.get("TRANSCODE_API_URL", "http://127.0.0.1:5000")
STACK = [str(PROJECT_ROOT / "scripts" / "stack.sh")]
FINAL = {"completed", "failed", "cancelled"}


def stack_running() -> bool:
    try:
        return requests.get(f"{API}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


def progress_bar(percent: float, status: str, width: int = 40) -> str:
    filled = int(width * percent / 100)
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}% {status:<10}"


def main() -> int:
    video = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else default_video()
    if not video.is_file():
        print(f"no such file: {video}", file=sys.stderr)
        return 2
    started_here = not stack_running()
    if started_here:
        print("starting the local stack (Airflow + API)...", flush=True)
        subprocess.run([*STACK, "up"], check=True)
    try:
        migrate()
        with session_scope() as session:
            _, key = create_api_key(session, "demo")
        headers = {"X-API-Key": key}
        began = time.monotonic()
        with video.open("rb") as fh:
            response = requests.post(f"{API}/api/upload", headers=headers, files={"file": (video.name, fh)},
                                     data={"priority": "5"}, timeout=600)  # fmt: skip
        if response.status_code != 200:
            print(f"upload refused ({response.status_code}): {response.json()['error']['message']}", file=sys.stderr)
            print("master: none (upload refused)")
            return 1
        job_id = response.json()["job_id"]
        print(f"uploaded {video.name} as job {job_id}; Airflow picks it up (pickup_jobs → transcode_video)")
        while True:
            job = requests.get(f"{API}/api/jobs/{job_id}", headers=headers, timeout=30).json()
            print(progress_bar(job["progress"] or 0.0, job["status"]), end="", file=sys.stderr, flush=True)
            if job["status"] in FINAL:
                print(file=sys.stderr)
                break
            time.sleep(1)
        outputs = job.get("outputs") or {}
        summary = {
            "job_id": job_id, "status": job["status"], "error": job["error"],
            "wall_seconds": time.monotonic() - began, "duration_s": outputs.get("duration_s"),
            "renditions": outputs.get("renditions", []),
        }  # fmt: skip
        print_table(summary)
        if job["status"] != "completed":
            print(f"master: none (job {job['status']})")
            return 1
        local = get_storage().local_path(outputs["master_key"])
        print(f"master: {local if local is not None else outputs['master_url']}")
        return 0
    finally:
        if started_here and os.environ.get("KEEP_STACK") != "1":
            subprocess.run([*STACK, "down"], check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
