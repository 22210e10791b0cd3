"""The object-storage interface every pipeline step talks to.

Keys are relative POSIX paths (``processed/<job_id>/hls/master.m3u8``). They
are validated by every backend method, because keys are partly built from
user input (source file names) and must never escape their namespace, be it
a directory on disk or a bucket.

Prefix semantics follow S3: ``list("a/b")`` matches ``a/b/c`` *and*
``a/bc``; pass a trailing ``/`` to mean "the folder ``a/b``".
"""

from __future__ import annotations

import mimetypes
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from include.errors import ObjectNotFound, StorageKeyError

MAX_KEY_LENGTH = 1024
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")

# mimetypes does not know the HLS types on every platform; players and CDNs
# care about them, so they are pinned here.
_CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
    ".json": "application/json",
}


@dataclass(frozen=True)
class ObjectInfo:
    """What :meth:`Storage.stat` knows about one object.

    ``etag_or_sha256`` is the S3 ETag on S3 (an MD5 only for single-part
    uploads) and the SHA-256 hex digest of the content for local files; use it
    to detect change, not to compare across backends.
    """

    key: str
    size: int
    etag_or_sha256: str


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object key, else raise StorageKeyError."""
    if not isinstance(key, str):
        raise StorageKeyError(f"storage key must be a string, got {type(key).__name__}")
    if not key:
        raise StorageKeyError("storage key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise StorageKeyError(f"storage key is {len(key)} characters; the limit is {MAX_KEY_LENGTH}")
    if "\x00" in key:
        raise StorageKeyError("storage key must not contain NUL")
    if "\\" in key:
        raise StorageKeyError(f"storage key must use '/' separators, not backslashes: {key!r}")
    if key.startswith("/"):
        raise StorageKeyError(f"storage key must be relative (no leading '/'): {key!r}")
    for segment in key.split("/"):
        if segment == "":
            raise StorageKeyError(f"storage key has an empty segment: {key!r}")
        if segment in {".", ".."}:
            raise StorageKeyError(f"storage key must not contain '.' or '..' segments: {key!r}")
        if not _SEGMENT.fullmatch(segment):
            raise StorageKeyError(
                f"storage key segment {segment!r} may only use A-Z a-z 0-9 '.' '_' '-': {key!r}"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """Validate a listing prefix: ``""``, or a key optionally ending in ``/``."""
    if prefix == "":
        return prefix
    if isinstance(prefix, str) and prefix.endswith("/"):
        validate_key(prefix[:-1])
    else:
        validate_key(prefix)
    return prefix


def guess_content_type(key: str) -> str:
    suffix = Path(key).suffix.lower()
    if suffix in _CONTENT_TYPES:
        return _CONTENT_TYPES[suffix]
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class Storage(ABC):
    """Object storage addressed by validated keys.

    Missing objects raise :class:`include.errors.ObjectNotFound`; malformed
    keys raise :class:`include.errors.StorageKeyError`. Other errors (network,
    permissions) propagate and are treated as transient by the orchestrator.
    """

    @abstractmethod
    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        """Upload the local file ``path`` to ``key`` (replacing any object)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under ``key``."""

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> Path:
        """Download ``key`` to ``path`` (parents created); returns ``path``."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the whole object; for small objects such as playlists."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Size of the object in bytes."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys starting with ``prefix`` (recursive), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; returns how many.

        An empty prefix is refused: wiping a whole store should never be one
        typo away.
        """

    @abstractmethod
    def copy(self, src_key: str, dst_key: str) -> None:
        """Copy ``src_key`` to ``dst_key`` without moving data through us."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size and fingerprint of ``key``."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """A locator for logs and ops: ``file:///…`` or ``s3://bucket/key``."""

    @abstractmethod
    def upload_stream(self, key: str, fileobj: BinaryIO, length: int = -1) -> None:
        """Store what ``fileobj`` yields, with bounded memory.

        ``length`` is the exact byte count, or ``-1`` when unknown (read to
        EOF). A stream shorter than a given ``length`` is an error and leaves
        nothing behind.
        """

    def move_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        """Store a scratch file under ``key`` and remove it locally.

        Backends on a local volume rename instead of copying; the caller must
        not touch ``path`` afterwards.
        """
        self.put_file(key, path, content_type)
        Path(path).unlink(missing_ok=True)

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Size of every object under ``prefix`` (for "bytes freed" reports).

        The default costs one request per object; backends whose listing
        already carries sizes override it. Objects deleted while listing are
        left out.
        """
        found: dict[str, int] = {}
        for key in self.list(prefix):
            try:
                found[key] = self.size(key)
            except ObjectNotFound:
                continue
        return found

    def inventory(self, prefix: str = "") -> list[ObjectInfo]:
        """:meth:`stat` of every object under ``prefix``, sorted by key (backup manifests).

        Same fingerprints as :meth:`stat` (S3 ETag, local SHA-256), so a
        later ``stat`` of an unchanged object matches. Objects deleted while
        listing are left out.
        """
        infos: list[ObjectInfo] = []
        for key in self.list(prefix):
            try:
                infos.append(self.stat(key))
            except ObjectNotFound:
                continue
        return infos

    def local_path(self, key: str) -> Path | None:
        """The object's own file when the store is a local/shared volume, else None.

        Lets a worker read a multi-gigabyte source in place instead of
        copying it into scratch first; callers must treat it as read-only.
        """
        return None
