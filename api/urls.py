"""Public URLs of published outputs, as NGINX serves them under ``/hls/``.

One function on purpose: when URLs get signed (expiry + HMAC), only this
changes. NGINX maps ``/hls/<job>/poster.jpg`` to ``processed/<job>/poster.jpg``
and every other ``/hls/<job>/<path>`` to ``processed/<job>/hls/<path>``.
"""

from __future__ import annotations

import re

from flask import current_app, has_app_context

from api import SETTINGS_KEY
from include.config import get_settings
from include.storage import validate_key

_HLS_KEY = re.compile(r"processed/(?P<job>[0-9a-f]{32})/hls/(?P<path>.+)")
_POSTER_KEY = re.compile(r"processed/(?P<job>[0-9a-f]{32})/poster\.jpg")


def _base_url() -> str:
    # The serving app's settings when there is one (tests build apps with
    # their own), else the process-wide ones (scripts, DAG code).
    if has_app_context() and SETTINGS_KEY in current_app.config:
        return current_app.config[SETTINGS_KEY].public_base_url.rstrip("/")
    return get_settings().public_base_url.rstrip("/")


def public_url(key: str) -> str:
    """The client-facing URL of a published object.

    ``processed/<job>/hls/master.m3u8`` -> ``<base>/hls/<job>/master.m3u8``;
    ``processed/<job>/poster.jpg`` -> ``<base>/hls/<job>/poster.jpg``. Any
    other key (sources, staging) is not public: ValueError.
    """
    validate_key(key)
    base = _base_url()
    match = _HLS_KEY.fullmatch(key)
    if match:
        return f"{base}/hls/{match['job']}/{match['path']}"
    match = _POSTER_KEY.fullmatch(key)
    if match:
        return f"{base}/hls/{match['job']}/poster.jpg"
    raise ValueError(f"storage key {key!r} is not a published output")
