"""Glue between Airflow tasks and include.pipeline.

include/ never imports Airflow, so the translation of its exceptions into
Airflow's retry semantics, and the failure callback that writes the outcome
back to the job row, live here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from include.errors import InputRejected

log = logging.getLogger(__name__)
T = TypeVar("T")


def job_id_of(context: dict[str, Any]) -> str:
    """The job a run works on: its trigger conf, validated by the DAG's params."""
    job_id = context["params"].get("job_id")
    if not job_id:
        raise AirflowFailException("this DAG must be triggered with conf {\"job_id\": \"...\"}")
    return str(job_id)


@contextmanager
def bad_input_fails_fast() -> Iterator[None]:
    """InputRejected → AirflowFailException: retrying bad input cannot help."""
    try:
        yield
    except InputRejected as exc:
        raise AirflowFailException(str(exc)) from exc


def run_step(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with bad_input_fails_fast():
        return step(*args, **kwargs)


def mark_job_failed(context: dict[str, Any]) -> None:
    """on_failure_callback: the task failed for good (no retries left, or bad input)."""
    from include.pipeline import fail_job

    job_id = context["params"].get("job_id")
    if not job_id:
        return
    exc = context.get("exception")
    cause = exc.__cause__ if isinstance(exc, AirflowFailException) and exc.__cause__ else exc
    task_id = context["task_instance"].task_id
    if isinstance(cause, InputRejected):
        reason = str(cause)
    else:
        # Internal errors can name hosts, paths or keys: the job row (which the
        # API shows to users) gets the step and the error class; the details
        # stay in the task log for operators.
        kind = type(cause).__name__ if cause else "error"
        reason = f"{task_id} failed ({kind}); see the Airflow task log, then clear the task to rerun it"
        log.error("job %s: %s failed: %s", job_id, task_id, cause)
    try:
        fail_job(str(job_id), reason)
    except Exception:  # a callback must never mask the task's own failure
        log.exception("could not mark job %s failed", job_id)


def run_id_of(context: dict[str, Any]) -> str:
    """The Airflow run id: the key that makes an operations run resumable.

    apply_retention stores its plan under it, so a retried or cleared task
    finds the plan of its own run instead of starting another one.
    """
    return str(context["run_id"])
