"""The job API: a Flask app factory and the helpers its blueprints share.

The API only writes and reads job rows and storage objects; it never runs an
encode and never talks to Airflow (the ``pickup_jobs`` DAG claims pending
rows). Authentication is an ``X-API-Key`` header: there are no cookies and no
sessions, so browsers never attach credentials on their own and there is no
CSRF surface to defend.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, current_app
from sqlalchemy.orm import Session
from werkzeug.middleware.proxy_fix import ProxyFix

from include.config import Settings, load_settings
from include.jobs.db import session_scope
from include.storage import Storage, get_storage

__all__ = ["create_app", "app_settings", "app_storage", "db_session"]

SETTINGS_KEY = "TRANSCODE_SETTINGS"
# Non-file form fields (priority, metadata) are small and werkzeug holds them
# in memory, so cap them below its 500 KB default. Not lower: werkzeug also
# applies this cap to its parser buffer, which takes 64 KiB reads plus a
# partial boundary, so a value near 64 KiB rejects ordinary file uploads.
MAX_FORM_MEMORY_SIZE = 256 * 1024
# file + priority + metadata, with room for clients that send extra fields.
MAX_FORM_PARTS = 16


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the API app.

    ``config`` overrides Flask settings; its ``TRANSCODE_SETTINGS`` entry (a
    :class:`include.config.Settings`) replaces the settings read from the
    environment. Settings are read here, once per app, not per request.
    """
    from api import auth, errors, health, intake, jobs, openapi, upload

    config = dict(config or {})
    settings: Settings = config.pop(SETTINGS_KEY, None) or load_settings()

    app = Flask(__name__)
    app.request_class = intake.UploadRequest
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY_SIZE,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
    )
    app.config.update(config)
    app.config[SETTINGS_KEY] = settings
    # Keep the documented field order in responses.
    app.json.sort_keys = False  # type: ignore[attr-defined]

    if settings.trusted_proxies > 0:
        # Only hops we operate may rewrite the client address/scheme/host;
        # with 0 (the default) a client cannot spoof X-Forwarded-For.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)  # type: ignore[method-assign]

    errors.init_app(app)
    # Registered before auth so that rejected requests are timed and counted too.
    app.register_blueprint(health.bp)
    auth.init_app(app)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(upload.bp)
    app.after_request(_security_headers)
    return app


def _security_headers(response: Response) -> Response:
    # Every response is per-caller (or live health data): never cache it, and
    # never let a browser reinterpret JSON as HTML.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def app_settings() -> Settings:
    """The settings of the app handling the current request."""
    return current_app.config[SETTINGS_KEY]


def app_storage() -> Storage:
    return get_storage(app_settings().storage_url)


@contextmanager
def db_session() -> Iterator[Session]:
    """A committed-on-success session on the app's database."""
    with session_scope(app_settings().database_url) as session:
        yield session
