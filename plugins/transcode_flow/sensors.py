"""PendingJobsSensor: waits for claimable jobs without holding a worker slot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from transcode_flow.triggers import PendingJobsTrigger


class PendingJobsSensor(BaseSensorOperator):
    """Deferrable sensor: the wait happens in the triggerer (see PendingJobsTrigger).

    Chosen over ``mode="reschedule"`` because rescheduling still starts a
    worker process for every poke; a trigger is one coroutine in an already
    running process and wakes on NOTIFY within milliseconds.
    """

    def __init__(self, *, poll_interval: float = 2.0, **kwargs: Any):
        kwargs.setdefault("timeout", timedelta(hours=1))
        super().__init__(**kwargs)
        self.poll_interval = poll_interval

    def execute(self, context: Any) -> Any:
        from include.config import get_settings
        from include.jobs import repository
        from include.jobs.db import session_scope

        with session_scope() as session:
            pending = repository.count_claimable(session)
        if pending:
            return pending
        self.defer(
            trigger=PendingJobsTrigger(get_settings().database_url, self.poll_interval),
            method_name="execute_complete",
            timeout=self.timeout,
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> int:
        return int((event or {}).get("pending", 0))

    def poke(self, context: Any) -> bool:  # required by the base class; execute() never pokes
        from include.jobs import repository
        from include.jobs.db import session_scope

        with session_scope() as session:
            return repository.count_claimable(session) > 0
