"""Wake-ups for the pickup sensor: PostgreSQL LISTEN/NOTIFY with polling as fallback.

A new job NOTIFYs ``transcode_jobs`` in the same transaction that inserts
it, so the sensor wakes within milliseconds of the commit instead of at its
next poll. SQLite has no such channel; there the poll interval is the latency.
"""

from __future__ import annotations

import select

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

CHANNEL = "transcode_jobs"


def notify_new_job(session: Session, job_id: str) -> None:
    """Queue a notification; PostgreSQL delivers it when the transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :job_id)"), {"channel": CHANNEL, "job_id": job_id})


def wait_for_new_jobs(database_url: str, timeout_s: float) -> bool:
    """Block until a job is announced or ``timeout_s`` passes; True if announced.

    Returns False at once-per-timeout on SQLite (caller polls). Opens its own
    short-lived connection, so it never holds a pooled one while idle.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return False
    import psycopg2

    conn = psycopg2.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        dbname=url.database, connect_timeout=10, **dict(url.query),
    )  # fmt: skip
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
        ready, _, _ = select.select([conn], [], [], timeout_s)
        if not ready:
            return False
        conn.poll()
        return bool(conn.notifies)
    finally:
        conn.close()
