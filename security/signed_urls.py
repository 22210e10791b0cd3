"""Signed HLS URLs, checked by NGINX's ``secure_link`` module.

A URL is ``/hls/<token>/<expires>/<job>/<path>`` with

    token = base64url(md5("<expires>/<job> <secret>")), no padding

so the signature covers the job's whole prefix, not one file: the relative
URIs inside ``master.m3u8`` (``720p/index.m3u8``, ``720p/seg_1.m4s``) resolve
under the same ``/hls/<token>/<expires>/<job>/`` and stay valid. NGINX
recomputes the hash with ``secure_link_md5 "$expires/$job <secret>"`` and
answers 403 to a missing, tampered or expired token.

MD5 is what ``secure_link`` offers; its weakness is collisions, which do not
help forge a token for a chosen ``expires/job`` without the secret. The
secret comes from the secrets provider (``TRANSCODE_HLS_SIGNING_SECRET``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time

from security.secrets import require_secret

SECRET_NAME = "TRANSCODE_HLS_SIGNING_SECRET"
# Rendered into nginx.conf inside double quotes: no quotes, '$', spaces, ';'.
_SAFE_SECRET = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")
_JOB = re.compile(r"[0-9a-f]{32}")


def check_secret(secret: str) -> str:
    if not _SAFE_SECRET.fullmatch(secret):
        raise ValueError(
            f"{SECRET_NAME} must be 16-256 characters from [A-Za-z0-9._~+/=-] "
            "(it is rendered into the NGINX config)"
        )
    return secret


def signing_secret() -> str:
    return check_secret(require_secret(SECRET_NAME))


def token(job_id: str, expires: int, secret: str) -> str:
    digest = hashlib.md5(f"{expires}/{job_id} {secret}".encode(), usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signed_path(job_id: str, path: str, *, ttl_s: int, secret: str, now: float | None = None) -> str:
    """``/hls/<token>/<expires>/<job>/<path>``, valid for ``ttl_s`` seconds."""
    if not _JOB.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    expires = int(now if now is not None else time.time()) + int(ttl_s)
    return f"/hls/{token(job_id, expires, secret)}/{expires}/{job_id}/{path}"
