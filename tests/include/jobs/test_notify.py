"""LISTEN/NOTIFY wake-ups for the pickup sensor, on a real PostgreSQL."""

from __future__ import annotations

import threading
import time

from include.jobs import repository
from include.jobs.db import migrate, session_scope
from include.jobs.notify import wait_for_new_jobs


def test_a_new_job_wakes_the_listener_at_once(pg_url: str) -> None:
    migrate(pg_url)

    def create_soon() -> None:
        time.sleep(0.5)
        with session_scope(pg_url) as session:
            repository.create_job(session, source_name="wake.mp4", source_key="sources/w/wake.mp4")

    threading.Thread(target=create_soon).start()
    started = time.monotonic()
    assert wait_for_new_jobs(pg_url, timeout_s=20) is True
    assert time.monotonic() - started < 10, "woken by the NOTIFY, not by the timeout"


def test_no_job_means_a_timeout(pg_url: str) -> None:
    migrate(pg_url)
    assert wait_for_new_jobs(pg_url, timeout_s=0.3) is False


def test_sqlite_has_no_channel_and_returns_at_once(sqlite_url: str) -> None:
    started = time.monotonic()
    assert wait_for_new_jobs(sqlite_url, timeout_s=5) is False
    assert time.monotonic() - started < 1
