"""Object storage: one interface (:class:`Storage`), a local and an S3 backend.

``get_storage()`` picks the backend from ``TRANSCODE_STORAGE_URL``:
``file:///abs/path`` for a directory, ``s3://bucket`` for S3/MinIO at
``TRANSCODE_S3_ENDPOINT``.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from include.config import get_settings

from .base import ObjectInfo, Storage, validate_key, validate_prefix

__all__ = [
    "ObjectInfo",
    "Storage",
    "clear_storage_cache",
    "get_storage",
    "validate_key",
    "validate_prefix",
]

# S3 bucket naming rules (lowercase, 3-63 chars, no leading/trailing dot or dash).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

_cache: dict[str, Storage] = {}
_cache_lock = threading.Lock()


def clear_storage_cache() -> None:
    """Drop cached backends (tests, or after changing settings/credentials)."""
    with _cache_lock:
        _cache.clear()


def _build(url: str) -> Storage:
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in {"", "localhost"}:
            raise ValueError(
                f"storage URL {url!r} has host {parts.netloc!r}; use file:///absolute/path "
                "(three slashes)"
            )
        path = Path(unquote(parts.path))
        if not path.is_absolute() or parts.path in {"", "/"}:
            raise ValueError(f"storage URL {url!r} must name an absolute directory other than /")
        from .local import LocalStorage

        return LocalStorage(path)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if parts.path not in {"", "/"} or parts.query or parts.fragment:
            raise ValueError(
                f"storage URL {url!r} must be s3://bucket without a path; keys carry their own prefixes"
            )
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"storage URL {url!r}: {bucket!r} is not a valid S3 bucket name")
        settings = get_settings()
        from .s3 import S3Storage  # keeps minio out of file:// deployments' imports

        return S3Storage(
            bucket=bucket,
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            secure=settings.s3_secure,
        )
    raise ValueError(
        f"unsupported storage URL {url!r}: set TRANSCODE_STORAGE_URL to file:///absolute/path "
        "or s3://bucket"
    )


def get_storage(url: str | None = None) -> Storage:
    """The storage backend for ``url`` (default: settings.storage_url), cached per URL."""
    if url is None:
        url = get_settings().storage_url
    url = url.strip()
    with _cache_lock:
        storage = _cache.get(url)
        if storage is None:
            storage = _cache[url] = _build(url)
        return storage
