"""X-API-Key authentication: keys are stored hashed, revoked keys are refused,
and every /api path except the OpenAPI document needs a key."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from include.jobs.db import session_scope
from include.jobs.models import ApiKey
from security.api_keys import (
    authenticate,
    create_api_key,
    generate_key,
    hash_key,
    list_api_keys,
    revoke_api_key,
)


def test_generated_keys_are_random_and_prefixed():
    first, second = generate_key(), generate_key()
    assert first.startswith("tf_") and second.startswith("tf_")
    assert first != second
    assert len(first) >= 40
    assert hash_key(first) == hash_key(first) and len(hash_key(first)) == 64


def test_only_the_hash_is_stored(settings):
    with session_scope(settings.database_url) as session:
        row, key = create_api_key(session, "ci")
    with session_scope(settings.database_url) as session:
        stored = session.execute(select(ApiKey)).scalars().one()
        values = [str(getattr(stored, c.key)) for c in ApiKey.__table__.columns]
    assert stored.key_hash == hash_key(key)
    assert all(key not in value for value in values)


def test_authenticate_refuses_unknown_malformed_and_revoked_keys(settings, keys):
    alice, bob = keys
    with session_scope(settings.database_url) as session:
        assert authenticate(session, alice.key).id == alice.id
        for bad in (None, "", "tf_", "tf_nope", alice.key + "x", alice.key[3:], "tf_" + "a" * 500, "tf_ü"):
            assert authenticate(session, bad) is None
        revoke_api_key(session, bob.id)
        assert authenticate(session, bob.key) is None
        revoked_at = session.get(ApiKey, bob.id).revoked_at
        revoke_api_key(session, bob.id)  # idempotent: keeps the first revocation time
        assert session.get(ApiKey, bob.id).revoked_at == revoked_at
        with pytest.raises(KeyError):
            revoke_api_key(session, "0" * 32)
        assert [k.name for k in list_api_keys(session)] == ["alice", "bob"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/jobs"),
        ("GET", "/api/jobs/stats"),
        ("GET", "/api/jobs/0123456789abcdef0123456789abcdef"),
        ("DELETE", "/api/jobs/0123456789abcdef0123456789abcdef"),
        ("POST", "/api/upload"),
        ("GET", "/api/no-such-thing"),  # unauthenticated callers do not learn which paths exist
    ],
)
def test_api_paths_need_a_key(client, keys, method, path):
    for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "tf_wrong"}, {"X-API-Key": keys[0].key.upper()}):
        response = client.open(path, method=method, headers=headers)
        assert response.status_code == 401, (headers, response.get_data(as_text=True))
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert "X-API-Key" in response.headers["WWW-Authenticate"]


def test_revoked_key_gets_401(client, settings, keys):
    alice, _ = keys
    assert client.get("/api/jobs", headers=alice.headers).status_code == 200
    with session_scope(settings.database_url) as session:
        revoke_api_key(session, alice.id)
    response = client.get("/api/jobs", headers=alice.headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "Invalid or revoked API key."


def test_public_paths_need_no_key(client):
    for path in ("/api/openapi.json", "/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_logs_never_contain_the_key(client, keys, caplog):
    alice, _ = keys
    caplog.set_level(logging.DEBUG)
    client.get("/api/jobs", headers={"X-API-Key": alice.key + "typo"})
    client.get("/api/jobs", headers=alice.headers)
    client.get("/api/jobs/" + "0" * 32, headers=alice.headers)
    assert "rejected API key" in caplog.text
    assert alice.key not in caplog.text


def test_no_cookies_are_ever_set(client, keys):
    alice, _ = keys
    for response in (client.get("/api/jobs", headers=alice.headers), client.get("/api/jobs"), client.get("/nope")):
        assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(("trusted", "logged"), [(0, "127.0.0.1"), (1, "203.0.113.7")])
def test_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(make_app, caplog, trusted, logged):
    client = make_app(trusted_proxies=trusted).test_client()
    caplog.set_level(logging.WARNING)
    client.get("/api/jobs", headers={"X-API-Key": "tf_wrong", "X-Forwarded-For": "203.0.113.7"})
    assert f"rejected API key from {logged} " in caplog.text
