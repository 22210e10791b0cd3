"""Object storage on S3 or an S3-compatible server (MinIO) via ``minio``.

Retries and multipart uploads are the minio client's. Credentials come from
the secrets provider (``TRANSCODE_S3_ACCESS_KEY`` / ``TRANSCODE_S3_SECRET_KEY``)
unless passed in.
"""

from __future__ import annotations

import builtins
import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.datatypes import Object as MinioObject
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from include.errors import ObjectNotFound, StorageKeyError

from .base import ObjectInfo, Storage, guess_content_type, validate_key, validate_prefix

log = logging.getLogger(__name__)

# Memory held by one upload_stream is about (parallel uploads + 1) * part size.
DEFAULT_PART_SIZE = 16 * 1024 * 1024
DEFAULT_PARALLEL_UPLOADS = 3
# Above this, S3 refuses a single CopyObject; compose_object does a
# server-side multipart copy instead.
_MAX_SINGLE_COPY = 5 * 1024**3
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "NoSuchObject", "ResourceNotFound"})


def split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Turn ``host:port`` or ``http(s)://host:port`` into minio's (host, secure).

    A scheme in the URL wins over ``secure``: ``http://`` with TLS on cannot
    work, and the URL is the more specific statement.
    """
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        return endpoint.rstrip("/"), secure
    parts = urlsplit(endpoint)
    if parts.scheme not in {"http", "https"}:
        raise ValueError(f"S3 endpoint {endpoint!r} must use http:// or https://")
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        raise ValueError(f"S3 endpoint {endpoint!r} must be a host[:port] without a path")
    url_secure = parts.scheme == "https"
    if url_secure != secure:
        log.warning(
            "S3 endpoint %s says %s but TRANSCODE_S3_SECURE=%s; using the URL's scheme",
            endpoint, parts.scheme, secure,
        )
    return parts.netloc, url_secure


@contextmanager
def _translate(key: str) -> Iterator[None]:
    try:
        yield
    except S3Error as exc:
        if exc.code in _NOT_FOUND_CODES:
            raise ObjectNotFound(f"no object under key {key!r}") from exc
        raise


class S3Storage(Storage):
    """Keys are object names in one bucket, created on first use if missing."""

    def __init__(
        self,
        bucket: str,
        endpoint: str | None,
        region: str,
        secure: bool,
        access_key: str | None = None,
        secret_key: str | None = None,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        parallel_uploads: int = DEFAULT_PARALLEL_UPLOADS,
    ) -> None:
        if access_key is None or secret_key is None:
            # Imported here so that LocalStorage users never need the secrets
            # backends configured.
            from security.secrets import require_secret

            access_key = access_key if access_key is not None else require_secret("TRANSCODE_S3_ACCESS_KEY")
            secret_key = secret_key if secret_key is not None else require_secret("TRANSCODE_S3_SECRET_KEY")
        host, secure = split_endpoint(endpoint or "s3.amazonaws.com", secure)
        if part_size < 5 * 1024 * 1024:
            raise ValueError("part_size must be at least 5 MiB (the S3 minimum)")
        self.bucket = bucket
        self.endpoint = host
        self.secure = secure
        self.region = region
        self.part_size = part_size
        self.parallel_uploads = max(1, parallel_uploads)
        self.client = Minio(
            host, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"S3Storage(bucket={self.bucket!r}, endpoint='{scheme}://{self.endpoint}')"

    # -- helpers -----------------------------------------------------------

    def _ensure_bucket(self) -> None:
        # Lazy so that building a Storage (e.g. at DAG parse time) makes no
        # network calls.
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket, location=self.region)
                    log.info("created bucket %s on %s", self.bucket, self.endpoint)
                except S3Error as exc:
                    # Another worker won the race; that is what we wanted.
                    if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise
            self._bucket_ready = True

    def _key(self, key: str) -> str:
        validate_key(key)
        self._ensure_bucket()
        return key

    # -- Storage -----------------------------------------------------------

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        self._key(key)
        self.client.fput_object(
            self.bucket, key, str(path),
            content_type=content_type or guess_content_type(key),
            part_size=self.part_size,
            num_parallel_uploads=self.parallel_uploads,
        )

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        self._key(key)
        self.client.put_object(
            self.bucket, key, io.BytesIO(data), len(data),
            content_type=content_type or guess_content_type(key),
        )

    def get_file(self, key: str, path: str | Path) -> Path:
        self._key(key)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # fget_object downloads to a ".part.minio" file and renames it, so the
        # destination never holds a partial download.
        with _translate(key):
            self.client.fget_object(self.bucket, key, str(dest))
        return dest

    def get_bytes(self, key: str) -> bytes:
        self._key(key)
        with _translate(key):
            response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def exists(self, key: str) -> bool:
        try:
            self._stat_object(key)
        except ObjectNotFound:
            return False
        return True

    def _stat_object(self, key: str) -> MinioObject:
        self._key(key)
        with _translate(key):
            return self.client.stat_object(self.bucket, key)

    def size(self, key: str) -> int:
        return int(self._stat_object(key).size or 0)

    def list(self, prefix: str = "") -> builtins.list[str]:
        validate_prefix(prefix)
        self._ensure_bucket()
        objects = self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
        return sorted(o.object_name for o in objects if not o.is_dir and o.object_name)

    def delete(self, key: str) -> None:
        self._key(key)
        # S3 DELETE on a missing key succeeds, which is the idempotence we want.
        with _translate(key):
            self.client.remove_object(self.bucket, key)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        if prefix == "":
            raise StorageKeyError("refusing to delete with an empty prefix (that is everything)")
        keys = self.list(prefix)
        if not keys:
            return 0
        # remove_objects batches 1000 keys per request and yields only failures.
        errors = list(self.client.remove_objects(self.bucket, (DeleteObject(k) for k in keys)))
        failed = [e for e in errors if e.code not in _NOT_FOUND_CODES]
        if failed:
            sample = ", ".join(f"{e.name}: {e.code}" for e in failed[:5])
            raise RuntimeError(
                f"deleting {len(failed)} of {len(keys)} objects under {prefix!r} failed ({sample})"
            )
        return len(keys)

    def copy(self, src_key: str, dst_key: str) -> None:
        self._key(src_key)
        self._key(dst_key)
        size = self.size(src_key)
        with _translate(src_key):
            if size <= _MAX_SINGLE_COPY:
                self.client.copy_object(self.bucket, dst_key, CopySource(self.bucket, src_key))
            else:
                self.client.compose_object(self.bucket, dst_key, [ComposeSource(self.bucket, src_key)])

    def sizes(self, prefix: str = "") -> dict[str, int]:
        # The listing carries sizes: one request per 1000 keys, not per key.
        validate_prefix(prefix)
        self._ensure_bucket()
        objects = self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
        return {o.object_name: int(o.size or 0) for o in objects if not o.is_dir and o.object_name}

    def inventory(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        # ETags from the listing are the ones stat_object returns.
        validate_prefix(prefix)
        self._ensure_bucket()
        objects = self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
        infos = [
            ObjectInfo(key=o.object_name, size=int(o.size or 0), etag_or_sha256=(o.etag or "").strip('"'))
            for o in objects if not o.is_dir and o.object_name
        ]  # fmt: skip
        return sorted(infos, key=lambda info: info.key)

    def stat(self, key: str) -> ObjectInfo:
        obj = self._stat_object(key)
        return ObjectInfo(key=key, size=int(obj.size or 0), etag_or_sha256=(obj.etag or "").strip('"'))

    def url_for(self, key: str) -> str:
        validate_key(key)
        return f"s3://{self.bucket}/{key}"

    def upload_stream(self, key: str, fileobj: BinaryIO, length: int = -1) -> None:
        self._key(key)
        # An aborted multipart upload leaves nothing visible, and a short
        # stream with a declared length raises inside minio, so a failed call
        # never publishes a partial object.
        self.client.put_object(
            self.bucket, key, fileobj, length,
            content_type=guess_content_type(key),
            part_size=self.part_size,
            num_parallel_uploads=self.parallel_uploads,
        )
