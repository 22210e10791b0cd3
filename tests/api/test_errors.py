"""Every error is JSON with a stable code; 500s reveal nothing internal."""

from __future__ import annotations

import logging

import pytest


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def test_unknown_path_is_json_404(client, keys):
    assert_error(client.get("/no/such/page"), 404, "not_found")
    assert_error(client.get("/api/nothing-here", headers=keys[0].headers), 404, "not_found")
    assert_error(client.get("/api/jobs/", headers=keys[0].headers), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/api/jobs", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/api/jobs/0123456789abcdef0123456789abcdef", {"GET", "HEAD", "OPTIONS", "DELETE"}),
        ("GET", "/api/upload", {"POST", "OPTIONS"}),
        ("DELETE", "/healthz", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_wrong_method_is_json_405_with_allow(client, keys, method, path, allowed):
    response = client.open(path, method=method, headers=keys[0].headers)
    assert_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == allowed


def test_unexpected_exception_is_a_bare_500_and_logged(make_app, keys, caplog):
    app = make_app()

    @app.get("/api/explode")
    def explode():
        raise RuntimeError("password=hunter2 at /srv/internal/db.py")

    caplog.set_level(logging.ERROR)
    response = app.test_client().get("/api/explode", headers=keys[0].headers)
    error = assert_error(response, 500, "internal_error")
    assert error["message"] == "Internal server error."
    assert b"hunter2" not in response.data and b"/srv" not in response.data and b"Traceback" not in response.data
    assert "hunter2" in caplog.text  # the operator gets the details


def test_malformed_multipart_is_json_400(client, keys):
    response = client.post(
        "/api/upload", headers=keys[0].headers, data=b"--xyz\r\ngarbage", content_type="multipart/form-data"
    )
    assert_error(response, 400, "missing_file")


def test_security_headers_on_every_response(client, keys):
    for response in (
        client.get("/api/jobs", headers=keys[0].headers),
        client.get("/api/jobs"),
        client.get("/nope"),
        client.get("/healthz"),
        client.get("/metrics"),
        client.get("/api/openapi.json"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in response.headers
