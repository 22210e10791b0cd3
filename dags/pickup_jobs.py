"""
### pickup_jobs

The bridge from the job API to the pipeline. Runs continuously, one run at a
time:

**wait_for_jobs** (deferrable: waits in the triggerer, woken by PostgreSQL
NOTIFY or a 2 s poll, holding no worker slot) → **claim** (moves up to 32
pending jobs to `queued` atomically: `FOR UPDATE SKIP LOCKED` on PostgreSQL,
compare-and-set on SQLite) → **trigger_transcode** (one `transcode_video`
run per job, run id `job_<id>_pNN` so a job can never be started twice and
its priority becomes the run's task priority_weight).

A run that finds nothing within an hour ends as skipped and the next one
starts at once.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task
from transcode_flow.sensors import PendingJobsSensor
from transcode_flow.tasks import run_step

from include import pipeline

CLAIM_BATCH = 32


@dag(
    dag_id="pickup_jobs",
    schedule="@continuous",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=5),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=2),
    },
    tags=["transcode", "intake"],
    doc_md=__doc__,
)
def pickup_jobs():
    wait = PendingJobsSensor(task_id="wait_for_jobs", poll_interval=2.0, soft_fail=True)

    @task
    def claim() -> list[dict]:
        return run_step(pipeline.claim_jobs, CLAIM_BATCH)

    claimed = claim()
    wait >> claimed
    TriggerDagRunOperator.partial(
        task_id="trigger_transcode",
        trigger_dag_id="transcode_video",
        skip_when_already_exists=True,
    ).expand_kwargs(claimed)


pickup_jobs()
