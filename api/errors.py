"""Every error the API returns is JSON: ``{"error": {"code": "...", "message": "..."}}``.

That covers our own errors (:class:`ApiError`), werkzeug's (404, 405, 413,
malformed requests) and unexpected exceptions, which are logged with their
traceback and answered with a bare 500 that reveals nothing about internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from include.errors import JobNotFound

log = logging.getLogger(__name__)

# Stable, documented codes for the statuses werkzeug raises by itself.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request is malformed."),
    401: ("unauthorized", "Missing or invalid API key; send it in the X-API-Key header."),
    404: ("not_found", "No such resource."),
    405: ("method_not_allowed", "This method is not allowed on this resource."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    422: ("unprocessable", "The request could not be processed."),
    500: ("internal_error", "Internal server error."),
    503: ("unavailable", "The service is temporarily unavailable; retry shortly."),
}


class ApiError(Exception):
    """An error answered as JSON with ``status``, a stable ``code`` and a user-facing message."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


def _not_found(exc: JobNotFound) -> Response:
    # Also the answer for another key's job: 404, never 403, so ids of other
    # users' jobs cannot be probed.
    return error_response(404, "not_found", "No such job.")


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, message = _HTTP_CODES.get(status, (_snake(exc.name), exc.description or exc.name))
    if status == 413:
        limit = request.max_content_length
        if limit is not None:
            message = f"The request body is too large; the limit is {limit} bytes."
    elif status == 400 and exc.description and not exc.description.startswith("The browser (or proxy)"):
        # werkzeug's own 400 texts describe the request, not the server.
        message = exc.description
    # Keep headers such as Allow (405) but not werkzeug's text/html type.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(status, code, message, headers)


def _database_unavailable(exc: DBAPIError) -> Response:
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        log.error("database unavailable on %s %s: %s", request.method, request.path, type(exc.orig).__name__)
        code, message = _HTTP_CODES[503]
        return error_response(503, code, message, {"Retry-After": "5"})
    return _unexpected(exc)


def _unexpected(exc: Exception) -> Response:
    # The traceback goes to the log only; the client learns nothing internal.
    log.exception("unhandled error on %s %s", request.method, request.path)
    code, message = _HTTP_CODES[500]
    return error_response(500, code, message)


def _snake(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").split()) or "error"


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(JobNotFound, _not_found)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(DBAPIError, _database_unavailable)
    app.register_error_handler(Exception, _unexpected)
