"""API-key authentication for ``/api/*``.

Every request under ``/api`` except the OpenAPI document needs a valid,
unrevoked key in the ``X-API-Key`` header, checked before routing so that an
unauthenticated caller learns nothing, not even which paths exist. The key's
id (never the key) is kept on ``flask.g`` for ownership checks and logs.

A header, not a cookie: browsers never send it on their own, so cross-site
requests cannot act as a user (no CSRF surface), and the API sets no cookies.
"""

from __future__ import annotations

import logging

from flask import Flask, g, request

from api import db_session
from api.errors import ApiError
from security.api_keys import authenticate

log = logging.getLogger(__name__)

HEADER = "X-API-Key"
PUBLIC_PATHS = frozenset({"/api/openapi.json"})
_CHALLENGE = {"WWW-Authenticate": f'ApiKey header="{HEADER}"'}


def _protected(path: str) -> bool:
    return (path == "/api" or path.startswith("/api/")) and path not in PUBLIC_PATHS


def require_api_key() -> None:
    if not _protected(request.path):
        return
    key = request.headers.get(HEADER)
    if not key:
        raise ApiError(401, "unauthorized", f"Missing API key; send it in the {HEADER} header.", _CHALLENGE)
    with db_session() as session:
        row = authenticate(session, key)
        if row is not None:
            g.api_key_id = row.id
            g.api_key_name = row.name
            return
    # Only the peer address is logged: the presented key is a secret even
    # when it is wrong (it may be a real key with a typo).
    log.warning("rejected API key from %s on %s %s", request.remote_addr, request.method, request.path)
    raise ApiError(401, "unauthorized", "Invalid or revoked API key.", _CHALLENGE)


def current_key_id() -> str:
    """Id of the authenticated caller's key (only valid under /api)."""
    return g.api_key_id


def init_app(app: Flask) -> None:
    app.before_request(require_api_key)
