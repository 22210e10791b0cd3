"""Job priority → task priority_weight for transcode_video runs."""

from __future__ import annotations

import re

from airflow.task.priority_strategy import PriorityWeightStrategy

_RUN_PRIORITY = re.compile(r"^job_[0-9a-f]{32}_p(\d{2})$")
DEFAULT_PRIORITY = 5


def priority_from_run_id(run_id: str | None) -> int:
    """pickup_jobs names runs ``job_<id>_pNN``; runs started by hand get the default."""
    match = _RUN_PRIORITY.match(run_id or "")
    return int(match.group(1)) if match else DEFAULT_PRIORITY


class JobPriorityWeight(PriorityWeightStrategy):
    """Weight = the job's priority (1-10), so a priority-9 job's tasks are queued
    before a priority-1 job's when pools are full.

    The scheduler computes weights on a detached task instance that only knows
    its run id, which is why the priority rides in the run id.
    """

    def get_weight(self, ti) -> int:  # noqa: ANN001 - Airflow's TaskInstance
        return priority_from_run_id(ti.run_id)
