"""
### backup_database

Daily (02:00 UTC, before Sunday's retention run) backup:
**dump** → **manifest** → **rotate**.

* **dump**: `pg_dump --format=custom` of the application database, streamed
  into object storage as `backups/db/<timestamp>-app.dump` with its SHA-256
  (SQLite: a consistent online copy with SQLite's backup API,
  `<timestamp>-app.sqlite`). Row counts and per-table digests are taken in
  the snapshot the dump uses. Airflow's metadata database is dumped too
  (`-airflow.dump`) when `TRANSCODE_AIRFLOW_DATABASE_URL` names a
  PostgreSQL database (Airflow 3 hides its own URL from tasks).
* **manifest**: inventory of published outputs (key, size, ETag/SHA-256)
  and sources, written last to `backups/manifests/<timestamp>.json`: a
  backup without a manifest does not count. Metrics in `ops_backup.prom`,
  history in `ops_runs`.
* **rotate**: keep the newest backup of each of the last
  `TRANSCODE_BACKUP_KEEP_DAILY` (7) days and `TRANSCODE_BACKUP_KEEP_WEEKLY`
  (4) ISO weeks; unfinished backups older than a day go too.

`drill_disaster_recovery` restores these backups monthly; the operator's
procedure is `docs/runbooks/disaster-recovery.md`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from transcode_flow.tasks import run_step

from include.ops import backup

RETRY_ARGS = {
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=20),
}


@dag(
    dag_id="backup_database",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=RETRY_ARGS,
    tags=["ops", "backup"],
    doc_md=__doc__,
)
def backup_database():
    # A retried dump takes a new timestamp; the failed attempt's partial
    # object has no manifest and is removed by rotate.
    @task(execution_timeout=timedelta(hours=2))
    def dump() -> dict:
        return run_step(backup.dump_databases)

    @task(execution_timeout=timedelta(hours=1))
    def manifest(dumped: dict) -> dict:
        return run_step(backup.write_manifest, dumped)

    @task(execution_timeout=timedelta(minutes=30))
    def rotate(_summary: dict) -> dict:
        return run_step(backup.prune_backups)

    rotate(manifest(dump()))


backup_database()
