"""``GET /api/openapi.json``: the API's OpenAPI 3.1 document, from ``openapi.yaml``.

The YAML file is the source (reviewable, commented); it is parsed once and
served as JSON. Tests validate it and fuzz the app against it, so it cannot
drift from behaviour unnoticed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify

bp = Blueprint("openapi", __name__)

SPEC_PATH = Path(__file__).with_name("openapi.yaml")


@lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    """The parsed document (cached; treat it as read-only)."""
    with open(SPEC_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@bp.get("/api/openapi.json")
def openapi_json() -> Response:
    return jsonify(load_spec())
