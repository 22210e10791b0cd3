"""
### apply_retention

Weekly (Sunday 03:00 UTC) data retention: **plan** → **purge** → **report**.

Policies (status + age since the job became final; `TRANSCODE_RETENTION_*`):

| policy | jobs | after | removes |
|---|---|---|---|
| completed-jobs | completed | 90 d | upload, HLS, poster, staging, job row |
| failed-jobs | failed | 30 d | the same |
| cancelled-jobs | cancelled | 30 d | the same |
| completed-sources | completed | 30 d | the original upload only; HLS stays |

* `dry_run` (param): plan and report what *would* go (jobs, objects,
  bytes); nothing is deleted.
* `policies` (param, optional): a JSON list replacing the configured
  policies for this run, e.g.
  `[{"name": "old-failed", "statuses": ["failed"], "older_than_days": 7, "scope": "job"}]`.
* Only jobs in a final state are ever touched; a job rerun since planning
  is skipped with the reason recorded.
* Objects first, then rows, one job at a time, every step recorded in
  `retention_items`: a retry or a cleared task resumes where the last
  attempt stopped and deletes nothing twice.
* Report: task log, `retention_audit` row, metrics file `ops_retention.prom`
  (`ops_retention_dry_run.prom` for dry runs).
* Bad policies fail at once (no retries); storage or database errors retry
  with exponential backoff.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from transcode_flow.tasks import run_id_of, run_step

from include.ops import retention

RETRY_ARGS = {
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
}


@dag(
    dag_id="apply_retention",
    schedule="0 3 * * 0",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    # Two purges at once would race for the same jobs.
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=12),
    default_args=RETRY_ARGS,
    params={
        "dry_run": Param(False, type="boolean", description="Report what would be deleted; delete nothing"),
        "policies": Param(
            None,
            type=["null", "array"],
            description="Optional JSON list of policies for this run (default: TRANSCODE_RETENTION_* settings)",
        ),
    },
    tags=["ops", "retention"],
    doc_md=__doc__,
)
def apply_retention():
    @task(execution_timeout=timedelta(hours=1))
    def plan() -> dict:
        context = get_current_context()
        params = context["params"]
        policies = run_step(retention.resolve_policies, params.get("policies"))
        return run_step(retention.plan_retention, run_id_of(context), dry_run=bool(params.get("dry_run")), policies=policies)

    @task(execution_timeout=timedelta(hours=10))
    def purge(_planned: dict) -> dict:
        return run_step(retention.apply_retention, run_id_of(get_current_context()))

    @task(execution_timeout=timedelta(minutes=15))
    def report(_purged: dict) -> dict:
        return run_step(retention.finish_retention, run_id_of(get_current_context()))

    report(purge(plan()))


apply_retention()
