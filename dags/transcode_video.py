"""
### transcode_video

One run per job, triggered with conf `{"job_id": "..."}` (by `pickup_jobs`,
the demo, or by hand from the UI):

**probe** → **plan** → **cpu_units**/**gpu_units** → **transcode_cpu** / **transcode_gpu** (mapped, one task
per encode unit) + **poster** → **segment** → **upload** → **finalize**

* Bad input (not a video, playlists, truncated files, absurd dimensions)
  fails at once without retries; the reason is written to the job row.
* Transient failures retry with exponential backoff.
* GPU units run in pool `transcode_gpu` on Celery queue `gpu`; an empty list
  is simply skipped. Encode units and the ladder come from the `plan` task.
* Clearing a failed task reruns it; every task moves the job back to
  `processing` first, and `finalize` marks it `completed` only after the
  master playlist is published.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from transcode_flow.tasks import job_id_of, mark_job_failed, run_step

from include import pipeline
from include.config import get_settings

RETRY_ARGS = {
    "retries": get_settings().task_retries,
    "retry_delay": timedelta(seconds=15),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": mark_job_failed,
    # By registered name: default_args are serialized as plain values, and
    # the API server rebuilds the strategy from this string.
    "weight_rule": "transcode_flow.priority.JobPriorityWeight",
}


@dag(
    dag_id="transcode_video",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=64,
    dagrun_timeout=timedelta(hours=12),
    default_args=RETRY_ARGS,
    params={"job_id": Param("", type="string", description="Job id from the application database")},
    tags=["transcode", "media"],
    doc_md=__doc__,
)
def transcode_video():
    @task(execution_timeout=timedelta(minutes=5))
    def probe() -> dict:
        return run_step(pipeline.probe_source, job_id_of(get_current_context()))

    @task(execution_timeout=timedelta(minutes=5))
    def plan(_probed: dict) -> dict:
        return run_step(pipeline.plan_job, job_id_of(get_current_context()))

    # Mapping needs a plain list per pool; XCom dict keys cannot be mapped over.
    @task
    def cpu_units(planned: dict) -> list[dict]:
        return pipeline.units_for(planned, gpu=False)

    @task
    def gpu_units(planned: dict) -> list[dict]:
        return pipeline.units_for(planned, gpu=True)

    @task(pool="transcode_cpu", map_index_template="{{ unit_label }}", execution_timeout=timedelta(hours=8))
    def transcode_cpu(unit: dict) -> dict:
        context = get_current_context()
        context["unit_label"] = pipeline.unit_label(unit)
        return run_step(pipeline.transcode_unit, job_id_of(context), unit)

    @task(pool="transcode_gpu", queue="gpu", map_index_template="{{ unit_label }}", execution_timeout=timedelta(hours=8))
    def transcode_gpu(unit: dict) -> dict:
        context = get_current_context()
        context["unit_label"] = pipeline.unit_label(unit)
        return run_step(pipeline.transcode_unit, job_id_of(context), unit)

    @task(execution_timeout=timedelta(minutes=10))
    def poster(_probed: dict) -> str:
        return run_step(pipeline.make_job_poster, job_id_of(get_current_context()))

    @task(trigger_rule="none_failed", execution_timeout=timedelta(hours=2))
    def segment() -> dict:
        return run_step(pipeline.segment_job, job_id_of(get_current_context()))

    @task(execution_timeout=timedelta(hours=1))
    def upload() -> str:
        return run_step(pipeline.publish_job, job_id_of(get_current_context()))

    @task(execution_timeout=timedelta(minutes=10))
    def finalize() -> dict:
        return run_step(pipeline.finalize_job, job_id_of(get_current_context()))

    probed = probe()
    planned = plan(probed)
    encoded = [transcode_cpu.expand(unit=cpu_units(planned)), transcode_gpu.expand(unit=gpu_units(planned))]
    packaged = segment()
    encoded >> packaged
    [packaged, poster(probed)] >> upload() >> finalize()


transcode_video()
