"""gunicorn settings for the job API: ``gunicorn -c gunicorn.conf.py api.wsgi:app``.

Command-line flags override these (e.g. ``--workers 4`` on a bigger host).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_HOME = Path(__file__).resolve().parent
_VAR = Path(os.environ.get("TRANSCODE_VAR_DIR") or _HOME / "var").resolve()

# Loopback only: NGINX terminates TLS on 8443 and proxies /api here
# (DESIGN.md §3 ports). Never expose gunicorn directly.
bind = "127.0.0.1:5000"

# gthread, 2 processes x 4 threads. Requests spend their time waiting on the
# database, on storage, on the disk while an upload streams to scratch, and on
# the ffprobe/ffmpeg child processes of the upload probe, not on Python
# bytecode, so threads give concurrency cheaply. Two processes keep the API up
# if one crashes or is being recycled. Unlike sync workers, a gthread worker's
# timeout is a heartbeat of the process, not a cap on one request, so a
# multi-gigabyte upload from a slow client is not killed mid-body.
worker_class = "gthread"
workers = 2
threads = 4

# A worker whose main loop stalls for 2 minutes is hung: replace it.
timeout = 120
# On restart/shutdown, requests in flight get 30 s to finish. A long upload
# cut off here is retried by the client; its Idempotency-Key makes that safe.
graceful_timeout = 30
# Recycle workers now and then so slow leaks (in C extensions, caches)
# cannot grow forever; the jitter keeps both from restarting at once.
max_requests = 1000
max_requests_jitter = 100
keepalive = 5

# The heartbeat file on tmpfs: a disk-backed /tmp under I/O pressure can
# stall the heartbeat and get healthy workers killed.
if Path("/dev/shm").is_dir():
    worker_tmp_dir = "/dev/shm"

# Access log without query strings (%(U)s is the path only): nothing a client
# puts in a URL lands in the logs. Headers (the API key) are never logged.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

# Prometheus: each worker is a process with its own counters. In multiprocess
# mode prometheus_client keeps them in files under this directory and
# /metrics adds them up. Set before any worker imports prometheus_client.
_METRICS_DIR = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_VAR / "prometheus"))


def on_starting(server: object) -> None:
    # Files left by a previous run would be summed into the new one's counters.
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    os.makedirs(_METRICS_DIR, exist_ok=True)


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
