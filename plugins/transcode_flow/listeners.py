"""Keeps job rows in step with what operators do in the Airflow UI."""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)
TRANSCODE_DAG = "transcode_video"


@hookimpl
def on_dag_run_failed(dag_run, msg: str) -> None:  # noqa: ANN001 - Airflow's DagRun
    """A transcode run that fails — including one marked failed in the UI — fails its job."""
    if dag_run.dag_id != TRANSCODE_DAG:
        return
    job_id = (dag_run.conf or {}).get("job_id")
    if not job_id:
        return
    from include.pipeline import fail_job

    try:
        fail_job(str(job_id), f"Airflow run {dag_run.run_id} failed" + (f": {msg}" if msg else ""))
    except Exception:  # a listener must never break the scheduler or the API server
        log.exception("could not mark job %s failed", job_id)
