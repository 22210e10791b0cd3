"""Public URLs of published outputs, as NGINX serves them under ``/hls/``.

URLs are signed (security/signed_urls.py): ``/hls/<token>/<expires>/<job>/<path>``,
valid for ``TRANSCODE_HLS_URL_TTL_S`` seconds. NGINX checks the signature with
``secure_link`` and maps ``.../<job>/poster.jpg`` to ``processed/<job>/poster.jpg``
and every other ``.../<job>/<path>`` to ``processed/<job>/hls/<path>``.
"""

from __future__ import annotations

import re

from flask import current_app, has_app_context

from api import SETTINGS_KEY
from include.config import Settings, get_settings
from include.storage import validate_key
from security.signed_urls import signed_path, signing_secret

_HLS_KEY = re.compile(r"processed/(?P<job>[0-9a-f]{32})/hls/(?P<path>.+)")
_POSTER_KEY = re.compile(r"processed/(?P<job>[0-9a-f]{32})/poster\.jpg")


def _settings() -> Settings:
    # The serving app's settings when there is one (tests build apps with
    # their own), else the process-wide ones (scripts, DAG code).
    if has_app_context() and SETTINGS_KEY in current_app.config:
        return current_app.config[SETTINGS_KEY]
    return get_settings()


def public_url(key: str) -> str:
    """The client-facing URL of a published object.

    ``processed/<job>/hls/master.m3u8`` -> ``<base>/hls/<token>/<expires>/<job>/master.m3u8``;
    ``processed/<job>/poster.jpg`` -> ``<base>/hls/<token>/<expires>/<job>/poster.jpg``.
    Any other key (sources, staging) is not public: ValueError. The signing
    secret missing is SecretUnavailable.
    """
    validate_key(key)
    match = _HLS_KEY.fullmatch(key)
    if match:
        job, path = match["job"], match["path"]
    elif match := _POSTER_KEY.fullmatch(key):
        job, path = match["job"], "poster.jpg"
    else:
        raise ValueError(f"storage key {key!r} is not a published output")
    settings = _settings()
    signed = signed_path(job, path, ttl_s=settings.hls_url_ttl_s, secret=signing_secret())
    return f"{settings.public_base_url.rstrip('/')}{signed}"
