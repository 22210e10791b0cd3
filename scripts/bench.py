"""Benchmarks, each printed side by side with a named baseline run in the same session.

pipeline-vs-ffmpeg
    The whole transcode_video DAG (``scripts/run_pipeline.py``: Python and
    Airflow start-up, probe, plan, transcode, segment, upload, finalize) on a
    60 s 1080p source, against ONE hand-written ffmpeg command that makes the
    same ladder (same rungs, bitrates, x264 preset, GOP, audio) as fMP4 HLS
    from the same source. Target: ratio (pipeline / ffmpeg) <= 1.15.
intake
    POST → transcode run running latency (p95 vs the 10 s target) and the
    gunicorn worker's RSS growth during a 2 GB upload (vs 100 MB), on a
    private copy of the stack (scripts/bench_intake.py).
backup-restore
    Backup, restore and verify of 10,000 seeded jobs on a throw-away
    PostgreSQL against the seed's targets (backup < 5 min, recovery < 1 h)
    and ours (all three < 60 s) (scripts/bench_ops.py).

The machine is shared and noisy: each round runs the pipeline and the
baseline back to back, and the median ratio over ``BENCH_REPEAT`` rounds
(default 3) is reported.

    python scripts/bench.py [--only NAME] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_delivery import bench_delivery, print_delivery
from bench_intake import bench_intake, print_intake
from bench_ops import bench_backup_restore, print_backup_restore
from run_pipeline import default_video

from include.config import PROJECT_ROOT
from include.media.hls import MASTER

BENCH_DIR = PROJECT_ROOT / "var" / "bench"
SOURCE_SECONDS = 60


def bench_source() -> Path:
    """60 s of 1080p25 H.264 (~8 Mb/s) + AAC made from the CC-BY Big Buck Bunny clip."""
    target = BENCH_DIR / "bbb-1080p-60s.mp4"
    if target.exists():
        return target
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(default_video()), "-t", str(SOURCE_SECONDS),
         "-vf", "scale=1920:1080:flags=bicubic", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "8M",
         "-maxrate", "10M", "-bufsize", "16M", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "160k", str(tmp)],
        check=True,
    )  # fmt: skip
    tmp.rename(target)
    return target


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the whole process tree, result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(command)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, cpu, proc


def run_pipeline(source: Path, var_dir: Path) -> tuple[float, float, dict]:
    env = {**os.environ, "TRANSCODE_VAR_DIR": str(var_dir), "TRANSCODE_DATABASE_URL": "", "TRANSCODE_STORAGE_URL": ""}
    wall, cpu, proc = timed([sys.executable, str(PROJECT_ROOT / "scripts" / "run_pipeline.py"), "--json", str(source)], env)
    summary = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    if summary["status"] != "completed":
        raise SystemExit(f"pipeline failed: {summary.get('error')}")
    return wall, cpu, summary


def handwritten_command(source: Path, plan: dict, out_dir: Path) -> list[str]:
    """What an engineer would type: one decode, split, N x264 encodes, shared audio, HLS muxer."""
    renditions = plan["renditions"]
    n = len(renditions)
    graph = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";"
    graph += ";".join(f"[s{i}]scale={r['width']}:{r['height']},setsar=1,format=yuv420p[v{i}]" for i, r in enumerate(renditions))
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-filter_complex", graph]
    for i, r in enumerate(renditions):
        gop = str(r["gop_frames"])
        cmd += ["-map", f"[v{i}]", f"-c:v:{i}", "libx264", f"-preset:v:{i}", plan["preset"], f"-profile:v:{i}", "high",
                f"-b:v:{i}", f"{r['bitrate_k']}k", f"-maxrate:v:{i}", f"{r['maxrate_k']}k", f"-bufsize:v:{i}", f"{r['bufsize_k']}k",
                f"-g:v:{i}", gop, f"-keyint_min:v:{i}", gop]  # fmt: skip
    cmd += ["-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*2)"]
    stream_map = [f"v:{i},agroup:aud,name:{r['name']}" for i, r in enumerate(renditions)]
    if plan["audio"]:
        a = plan["audio"]
        cmd += ["-map", "0:a:0", "-c:a", "aac", "-b:a", f"{a['bitrate_k']}k", "-ac", str(a["channels"]), "-ar", str(a["sample_rate"])]
        stream_map.append("a:0,agroup:aud,name:audio")
    cmd += [
        "-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
        "-hls_flags", "independent_segments", "-master_pl_name", MASTER,
        "-hls_segment_filename", f"{out_dir}/%v/seg_%05d.m4s", "-var_stream_map", " ".join(stream_map),
        f"{out_dir}/%v/index.m3u8",
    ]  # fmt: skip
    return cmd


def bench_pipeline_vs_ffmpeg(repeat: int) -> dict:
    source = bench_source()
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=BENCH_DIR))
    try:
        pipe_walls, pipe_cpus, base_walls, base_cpus = [], [], [], []
        plan = None
        for i in range(repeat):
            # The plan is only known after a pipeline run, so the first round runs the pipeline first.
            wall, cpu, summary = run_pipeline(source, work / f"pipe{i}")
            pipe_walls.append(wall)
            pipe_cpus.append(cpu)
            if plan is None:
                from include.jobs import repository
                from include.jobs.db import session_scope

                with session_scope(f"sqlite:///{work / f'pipe{i}' / 'transcode.db'}") as session:
                    plan = repository.get_job(session, summary["job_id"]).plan
            shutil.rmtree(work / f"pipe{i}", ignore_errors=True)
            out = work / f"ffmpeg{i}"
            out.mkdir()
            wall, cpu, _ = timed(handwritten_command(source, plan, out))
            base_walls.append(wall)
            base_cpus.append(cpu)
            shutil.rmtree(out, ignore_errors=True)
        result = {
            "rungs": [r["name"] for r in plan["renditions"]] + (["audio"] if plan["audio"] else []),
            "baseline_wall_s": statistics.median(base_walls),
            "pipeline_wall_s": statistics.median(pipe_walls),
            "baseline_cpu_s": statistics.median(base_cpus),
            "pipeline_cpu_s": statistics.median(pipe_cpus),
        }
        # Each round runs the two back to back, so the ratio within a round
        # cancels most of the machine's drift; report the median of those.
        result["round_ratios"] = [round(p / b, 3) for p, b in zip(pipe_walls, base_walls)]
        result["wall_ratio"] = statistics.median(p / b for p, b in zip(pipe_walls, base_walls))
        result["cpu_ratio"] = statistics.median(p / b for p, b in zip(pipe_cpus, base_cpus))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_pipeline(result: dict) -> None:
    print("\n== pipeline-vs-ffmpeg: 60 s 1080p25 source, ladder " + "/".join(result["rungs"]))
    print(f"{'':<28}{'baseline: one ffmpeg':>22}{'transcode_video DAG':>22}{'ratio':>8}{'target':>9}")
    print(f"{'wall time (s)':<28}{result['baseline_wall_s']:>22.1f}{result['pipeline_wall_s']:>22.1f}"
          f"{result['wall_ratio']:>8.3f}{'<= 1.15':>9}")  # fmt: skip
    print(f"{'CPU time (s, whole tree)':<28}{result['baseline_cpu_s']:>22.1f}{result['pipeline_cpu_s']:>22.1f}"
          f"{result['cpu_ratio']:>8.3f}")  # fmt: skip
    verdict = "PASS" if result["wall_ratio"] <= 1.15 else "MISS"
    print(f"pipeline/ffmpeg wall ratio (median of rounds {result['round_ratios']}) {result['wall_ratio']:.3f} -> {verdict}")


BENCHES = {
    "pipeline-vs-ffmpeg": (bench_pipeline_vs_ffmpeg, print_pipeline),
    "intake": (bench_intake, print_intake),
    "backup-restore": (bench_backup_restore, print_backup_restore),
    "delivery": (bench_delivery, print_delivery),
}


def main() -> int:
    parser = argparse.ArgumentParser(description="Transcode Flow benchmarks")
    parser.add_argument("--only", choices=sorted(BENCHES))
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = {}
    for name, (bench, show) in BENCHES.items():
        if args.only and name != args.only:
            continue
        results[name] = bench(max(1, args.repeat))
        show(results[name])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
