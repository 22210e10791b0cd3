"""Liveness, readiness and Prometheus metrics (no API key needed).

``/healthz`` says the process answers; ``/readyz`` says it can do its work
(database and storage reachable) so a load balancer only routes to workers
that can; ``/metrics`` is Prometheus text. Expose ``/metrics`` to the
scraper only (NGINX does not proxy it to the internet).

Under gunicorn each worker is a process with its own counters; when
``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn.conf.py does) the values live
in files there and ``/metrics`` sums every worker's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from sqlalchemy import text

from api import app_storage, db_session

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------

REQUESTS = Counter(
    "transcode_api_requests_total", "HTTP requests handled, by endpoint and status.", ["method", "endpoint", "status"]
)
LATENCY = Histogram(
    "transcode_api_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint and status.",
    ["method", "endpoint", "status"],
    # API reads target p95 < 200 ms; uploads (body + probe) take seconds to minutes.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
UPLOADS = Counter("transcode_api_uploads_total", "Uploads by outcome (accepted, duplicate, rejected).", ["outcome"])
UPLOAD_BYTES = Counter("transcode_api_upload_bytes_total", "Bytes of accepted uploads.")

# Label for requests that matched no route: raw paths would let any client
# create unbounded label values.
UNMATCHED = "<unmatched>"


@bp.before_app_request
def _start_timer() -> None:
    g.request_started = time.perf_counter()


@bp.after_app_request
def _record(response: Response) -> Response:
    started = g.pop("request_started", None)
    endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    labels = {"method": request.method, "endpoint": endpoint, "status": str(response.status_code)}
    REQUESTS.labels(**labels).inc()
    if started is not None:
        LATENCY.labels(**labels).observe(time.perf_counter() - started)
    return response


@bp.get("/metrics")
def metrics() -> Response:
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    # Negotiated like prometheus_client's own server (text 0.0.4 or OpenMetrics).
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), content_type=content_type)


# --------------------------------------------------------------------------
# Health
# --------------------------------------------------------------------------

CHECK_TIMEOUT_S = 3.0
# A small shared pool: checks stuck on a black-holed host occupy at most
# these threads, and later probes then time out (not ready) instead of
# piling up threads.
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _database_ready() -> None:
    with db_session() as session:
        session.execute(text("SELECT 1"))


def _storage_ready() -> None:
    storage = app_storage()
    root = getattr(storage, "root", None)
    if root is not None:  # local files: the directory must be there and writable
        if not (root.is_dir() and os.access(root, os.W_OK | os.X_OK)):
            raise OSError(f"storage root {root} is missing or not writable")
        return
    # Remote store: a HEAD on a key that need not exist proves the endpoint,
    # credentials and bucket work; a missing object is a normal answer.
    storage.exists("readyz/probe")


def _run_check(check: Callable[[], None], app: Flask) -> str:
    def in_context() -> None:
        with app.app_context():  # the check runs in a pool thread
            check()

    try:
        _checks.submit(in_context).result(timeout=CHECK_TIMEOUT_S)
    except FutureTimeout:
        log.error("readiness check %s timed out after %.0f s", check.__name__, CHECK_TIMEOUT_S)
        return "unavailable"
    except Exception as exc:  # any failure means not ready; details only in the log
        log.error("readiness check %s failed: %s: %s", check.__name__, type(exc).__name__, exc)
        return "unavailable"
    return "ok"


@bp.get("/readyz")
def readyz() -> Response:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    checks = {"database": _run_check(_database_ready, app), "storage": _run_check(_storage_ready, app)}
    ready = all(state == "ok" for state in checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    return response
