"""
### drill_disaster_recovery

Monthly (1st, 05:00 UTC) and on demand: restore a backup for real and prove
it is usable. **choose_backup** (setup) → **restore_and_verify** →
**drop_scratch_database** (teardown, runs whatever happened).

**restore_and_verify** follows `docs/runbooks/disaster-recovery.md`:
download the dumps and check their SHA-256 against the manifest,
`pg_restore` into a scratch database `transcode_drill_*` (on
`TRANSCODE_DRILL_DATABASE_URL`'s server, default the application's),
compare every table's row count and content digest with the manifest,
upgrade the copy to the code's migration head, check that every published
object in the manifest still exists and that a sample
(`TRANSCODE_DRILL_SAMPLE`, 5) of completed jobs' outputs match it, decode
one master playlist from a downloaded copy, and compare the recovery time
with `TRANSCODE_RTO_SECONDS` (3600).

Any finding fails the task at once (no retries: a corrupt backup stays
corrupt), with every finding in the error, an ERROR log line, metric
`transcode_drill_success 0` in `ops_drill.prom`, and a report in
`backups/drills/<timestamp>.json` and `.md`. Unreachable storage or
database retries with backoff.

Params: `backup` (`latest`, a timestamp such as `20260314T020000Z`, or a
manifest key), `sample` and `rto_seconds` to override the settings.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, setup, task, teardown
from transcode_flow.tasks import run_step

from include.ops import drill

RETRY_ARGS = {
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=20),
}


@dag(
    dag_id="drill_disaster_recovery",
    schedule="0 5 1 * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=RETRY_ARGS,
    params={
        "backup": Param("latest", type="string", description="latest, a backup timestamp, or a manifest key"),
        "sample": Param(None, type=["null", "integer"], minimum=0, description="Jobs whose outputs are compared"),
        "rto_seconds": Param(None, type=["null", "number"], exclusiveMinimum=0, description="Recovery time objective"),
    },
    tags=["ops", "backup", "disaster-recovery"],
    doc_md=__doc__,
)
def drill_disaster_recovery():
    @setup
    @task(execution_timeout=timedelta(minutes=10))
    def choose_backup() -> dict:
        params = get_current_context()["params"]
        return {
            "manifest_key": run_step(drill.find_backup, params.get("backup")),
            "scratch_name": drill.scratch_database_name(),
        }

    @task(execution_timeout=timedelta(hours=4))
    def restore_and_verify(chosen: dict) -> dict:
        params = get_current_context()["params"]
        return run_step(
            drill.run_drill, chosen["manifest_key"], chosen["scratch_name"],
            sample=params.get("sample"), rto_seconds=params.get("rto_seconds"),
        )  # fmt: skip

    # The drill drops its scratch database itself; this catches a worker
    # killed mid-restore, and any copy an earlier killed drill left behind.
    # As a teardown it does not decide the run's state: a failed drill
    # still fails the run.
    @teardown
    @task(execution_timeout=timedelta(minutes=10))
    def drop_scratch_database(chosen: dict) -> dict:
        return run_step(drill.cleanup_scratch, chosen["scratch_name"])

    chosen = choose_backup()
    restore_and_verify(chosen) >> drop_scratch_database(chosen)


drill_disaster_recovery()
