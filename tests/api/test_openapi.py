"""The OpenAPI document is valid 3.1 and matches the app: every route is
documented and nothing else is, and schemathesis finds no response that
breaks the documented statuses, schemas, content types or headers."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from schemathesis.generation.modes import GenerationMode

from api.openapi import load_spec
from include.jobs.states import JobStatus

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def test_served_document_is_valid_openapi_31(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"].startswith("3.1")
    validate(document, cls=OpenAPIV31SpecValidator)
    assert document == load_spec()


def _flask_path(rule: str) -> str:
    # /api/jobs/<job_id:job_id> -> /api/jobs/{job_id}
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def test_every_route_is_documented_and_every_documented_route_exists(app):
    documented = {
        (path, method.upper())
        for path, item in load_spec()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    routed = {
        (_flask_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routed == documented


def test_documented_statuses_match_the_state_machine():
    schemas = load_spec()["components"]["schemas"]
    assert schemas["JobStatus"]["enum"] == [s.value for s in JobStatus]
    assert set(schemas["Stats"]["properties"]["counts"]["required"]) == {s.value for s in JobStatus}


class _TestApp:
    """A WSGI app that forwards to this test's app.

    The schema below is built at import time (schemathesis' from_fixture
    loader does not work with pytest 9: it sets Function._nodeid), but each
    test gets a fresh app with its own database; some checks re-send
    requests through the schema's own transport, so the schema must carry a
    WSGI app, and this one points at the current test's.
    """

    current: Any = None

    def __call__(self, environ: dict, start_response: Any) -> Any:
        return self.current(environ, start_response)


_app = _TestApp()
# Built from the same YAML the app serves (the first test proves they are equal).
schema = schemathesis.openapi.from_dict(load_spec())
schema.app = _app
# Positive and negative data: valid requests must get their documented 200s,
# invalid ones their documented 400/404s. The valid key is always sent (the
# key header is not fuzzed); the ignored_auth check replays requests without
# it and expects the documented 401. Unknown query parameters are ignored by
# the API (as most HTTP APIs do, so cache-busters and new clients work), so
# they do not count as invalid data.
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=25,
    deterministic=True,
    with_security_parameters=False,
    allow_extra_parameters=True,
)


@schema.include(method="GET").parametrize()
@hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_get_endpoints_conform_to_the_document(case, app, keys):
    _app.current = app
    case.call_and_validate(headers=keys[0].headers)
