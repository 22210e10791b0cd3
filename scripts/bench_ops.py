"""Benchmark: backup, then restore-and-verify, of 10,000 jobs.

backup-restore
    A throw-away PostgreSQL (tests/pg.py) is seeded with 10,000 jobs in a
    realistic mix (85 % completed) with 4 rendition rows each; every
    completed job has real published HLS, a poster and a source in local
    file storage (hard-linked copies of one tiny real ladder, so the object
    count is real while the bytes stay small). Then, timed separately:

    * backup: ``include.ops.backup.run_backup`` (pg_dump streamed to
      storage, per-table digests in the dump's snapshot, SHA-256 of every
      published object for the manifest);
    * drill: ``include.ops.drill.run_drill`` (download + checksum, createdb,
      pg_restore, row counts and digests, migrate to head, presence of every
      published object, byte-exact sample, one HLS decode, drop).

    Printed against the seed's targets as ratios (backup / 300 s,
    recovery / 3600 s) and against ours: backup + drill < 60 s.

    python scripts/bench_ops.py [--repeat N] [--jobs N]

``scripts/bench.py`` can wire it in through ``bench_backup_restore`` and
``print_backup_restore``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from include.config import PROJECT_ROOT, load_settings
from include.jobs.db import dispose_engines, migrate
from include.ops import backup, drill
from include.storage.local import LocalStorage

BENCH_DIR = PROJECT_ROOT / "var" / "bench"
JOBS = 10_000
SEED_BACKUP_TARGET_S = 300.0  # seed: backup < 5 min
SEED_RECOVERY_TARGET_S = 3600.0  # seed: recovery < 1 h
OUR_TOTAL_TARGET_S = 60.0  # ours: backup + restore + verify < 60 s


def bench_backup_restore(repeat: int, jobs: int = JOBS) -> dict:
    """Seed ``jobs`` jobs, then time backup and drill ``repeat`` times (medians)."""
    from tests import ops_seed
    from tests.pg import start_postgres

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ops-", dir=BENCH_DIR))
    url, stop = start_postgres(work)
    try:
        settings = dataclasses.replace(
            load_settings(), database_url=url, storage_url=(work / "store").as_uri(), var_dir=work / "var",
            scratch_dir=work / "scratch", metrics_dir=work / "metrics", airflow_database_url=None,
            drill_database_url=None,
        )  # fmt: skip
        storage = LocalStorage(work / "store")
        migrate(url)
        seed_started = time.monotonic()
        seeded = ops_seed.seed_bulk(url, storage, jobs, ops_seed.make_hls_tree(work / "tree"))
        seed_s = time.monotonic() - seed_started
        backups, drills, recoveries, summaries = [], [], [], []
        for _ in range(max(1, repeat)):
            started = time.monotonic()
            summary = backup.run_backup(settings=settings, storage=storage, prune=False)
            backups.append(time.monotonic() - started)
            started = time.monotonic()
            report = drill.run_drill(summary["manifest_key"], settings=settings, storage=storage)
            drills.append(time.monotonic() - started)
            recoveries.append(report["recovery_seconds"])
            summaries.append((summary, report))
            time.sleep(1.1)  # backups are named by the second
        summary, report = summaries[-1]
        steps = {s["name"]: s["seconds"] for s in report["steps"]}
        result = {
            "jobs": seeded["jobs"],
            "rendition_rows": seeded["renditions"],
            "published_objects": summary["published_objects"],
            "dump_bytes": sum(d["size"] for d in summary["databases"]),
            "seed_s": seed_s,
            "backup_s": statistics.median(backups),
            "drill_s": statistics.median(drills),
            "recovery_s": statistics.median(recoveries),
            "drill_steps_s": steps,
            "repeat": len(backups),
        }
        result["total_s"] = result["backup_s"] + result["drill_s"]
        result["backup_ratio"] = result["backup_s"] / SEED_BACKUP_TARGET_S
        result["recovery_ratio"] = result["recovery_s"] / SEED_RECOVERY_TARGET_S
        result["total_ratio"] = result["total_s"] / OUR_TOTAL_TARGET_S
        return result
    finally:
        dispose_engines()
        stop()
        shutil.rmtree(work, ignore_errors=True)


def print_backup_restore(result: dict) -> None:
    print(f"\n== backup-restore: {result['jobs']} jobs, {result['rendition_rows']} rendition rows, "
          f"{result['published_objects']} published objects, dump {result['dump_bytes'] / 1e6:.1f} MB "
          f"(median of {result['repeat']})")  # fmt: skip
    print(f"{'':<34}{'measured (s)':>14}{'target (s)':>12}{'ratio':>8}  verdict")
    rows = [
        ("backup (seed: < 5 min)", result["backup_s"], SEED_BACKUP_TARGET_S, result["backup_ratio"]),
        ("recovery (seed: < 1 h)", result["recovery_s"], SEED_RECOVERY_TARGET_S, result["recovery_ratio"]),
        ("backup + drill (ours: < 60 s)", result["total_s"], OUR_TOTAL_TARGET_S, result["total_ratio"]),
    ]
    for name, seconds, target, ratio in rows:
        print(f"{name:<34}{seconds:>14.1f}{target:>12.0f}{ratio:>8.3f}  {'PASS' if ratio < 1 else 'MISS'}")
    steps = ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["drill_steps_s"].items())
    print(f"drill steps (s): {steps}; whole drill incl. report and drop {result['drill_s']:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description="backup and restore-and-verify benchmark")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = bench_backup_restore(args.repeat, args.jobs)
    print_backup_restore(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
