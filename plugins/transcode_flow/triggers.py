"""Deferrable wait for pending jobs: runs in the triggerer, holds no worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def _pending_count(database_url: str) -> int:
    from include.jobs import repository
    from include.jobs.db import session_scope

    with session_scope(database_url) as session:
        return repository.count_claimable(session)


class PendingJobsTrigger(BaseTrigger):
    """Fires once at least one job is waiting to be claimed.

    On PostgreSQL it sleeps in LISTEN and wakes on the NOTIFY sent with each
    new job; ``poll_interval`` is the fallback (and SQLite's only) cadence.
    """

    def __init__(self, database_url: str, poll_interval: float = 2.0):
        super().__init__()
        self.database_url = database_url
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "transcode_flow.triggers.PendingJobsTrigger",
            {"database_url": self.database_url, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from include.jobs.notify import wait_for_new_jobs

        while True:
            pending = await asyncio.to_thread(_pending_count, self.database_url)
            if pending:
                yield TriggerEvent({"pending": pending})
                return
            notified = await asyncio.to_thread(wait_for_new_jobs, self.database_url, self.poll_interval)
            if not notified:
                await asyncio.sleep(0 if self.database_url.startswith("postgresql") else self.poll_interval)
