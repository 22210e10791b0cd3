"""Upload intake: stream the body to scratch, validate the form, store the source.

The request body is never held in memory: :class:`UploadRequest` gives
werkzeug's multipart parser a file in ``settings.scratch_dir`` for every file
part, so a multi-gigabyte upload costs disk, not RAM. The scratch directory
sits next to local storage, which lets ``move_file`` hard-link the upload
into place instead of copying it. Every scratch file a request created is
deleted when the request is closed, whatever happened (Flask closes the
request when it pops the request context).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import SETTINGS_KEY
from api.errors import ApiError
from include.config import Settings, get_settings
from include.jobs import repository
from include.jobs.db import session_scope
from include.jobs.models import Job, new_id
from include.pipeline import source_key
from include.storage import get_storage
from security.validation import sanitize_filename

DEFAULT_PRIORITY = 5
MAX_METADATA_BYTES = 10 * 1024
MAX_METADATA_DEPTH = 3
MAX_IDEMPOTENCY_KEY_LENGTH = 200
_PRIORITY = re.compile(r"[0-9]{1,2}")
# Visible ASCII: the key is echoed into logs and compared byte for byte.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,%d}" % MAX_IDEMPOTENCY_KEY_LENGTH)


class UploadRequest(Request):
    """A Flask request whose uploaded files stream straight into scratch files."""

    def _scratch_files(self) -> list[IO[bytes]]:
        return self.__dict__.setdefault("_transcode_scratch_files", [])

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        settings: Settings = current_app.config.get(SETTINGS_KEY) or get_settings()
        settings.scratch_dir.mkdir(parents=True, exist_ok=True)
        # delete=False: the file is moved into storage by name; close() below
        # removes whatever is left.
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            mode="w+b", dir=settings.scratch_dir, prefix="upload-", suffix=".part", delete=False
        )
        self._scratch_files().append(handle)
        return handle

    def scratch_path(self, stream: Any) -> Path:
        """The scratch file behind an uploaded file's stream, flushed to disk."""
        for handle in self._scratch_files():
            if handle is stream:
                handle.flush()
                return Path(handle.name)
        raise RuntimeError("uploaded file is not backed by a scratch file")

    def close(self) -> None:
        try:
            super().close()
        finally:
            for handle in self.__dict__.pop("_transcode_scratch_files", []):
                try:
                    handle.close()
                finally:
                    Path(handle.name).unlink(missing_ok=True)


# --------------------------------------------------------------------------
# Form and header validation
# --------------------------------------------------------------------------


def parse_priority(raw: str | None) -> int:
    """``priority`` form field: an integer 1-10 (10 = most urgent), default 5."""
    if raw is None:
        return DEFAULT_PRIORITY
    if not _PRIORITY.fullmatch(raw) or not 1 <= int(raw) <= 10:
        raise ApiError(400, "invalid_priority", "priority must be an integer from 1 to 10.")
    return int(raw)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether objects/arrays nest deeper than ``limit`` (the top object is level 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if level + 1 > limit:
                    return True
                stack.append((child, level + 1))
    return False


def parse_metadata(raw: str | None) -> dict[str, Any]:
    """``metadata`` form field: a JSON object, nested at most 3 levels, at most 10 KB."""
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_metadata", "metadata must be valid JSON.") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_metadata", "metadata must be a JSON object.")
    if _depth_exceeds(value, MAX_METADATA_DEPTH):
        raise ApiError(400, "invalid_metadata", f"metadata may nest at most {MAX_METADATA_DEPTH} levels deep.")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ApiError(
            413, "metadata_too_large", f"metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES} bytes."
        )
    return value


def parse_idempotency_key(raw: str | None) -> str | None:
    """``Idempotency-Key`` header: 1-200 visible ASCII characters, or absent."""
    if raw is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(raw):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters.",
        )
    return raw


# --------------------------------------------------------------------------
# Storing an accepted upload
# --------------------------------------------------------------------------


def find_idempotent(session: Session, owner_key_id: str, idempotency_key: str) -> Job | None:
    """The caller's job created with this Idempotency-Key, if any."""
    stmt = select(Job).where(Job.owner_key_id == owner_key_id, Job.idempotency_key == idempotency_key)
    return session.execute(stmt).scalars().first()


def source_prefix(job_id: str) -> str:
    return f"sources/{job_id}/"


def store_upload(
    path: Path,
    *,
    settings: Settings,
    owner_key_id: str,
    filename: str | None,
    priority: int,
    metadata: dict[str, Any],
    idempotency_key: str | None,
    probe_summary: dict[str, Any],
    size: int,
) -> tuple[Job, bool]:
    """Move a probed upload into storage, then create its pending job.

    Returns (job, created); ``created`` is False when a concurrent request
    with the same Idempotency-Key won, in which case this upload's object is
    removed again and the winner's job is returned.

    The object is stored before the row exists, so the pickup sensor never
    sees a pending job without its source, and a failed insert leaves no
    job behind (the object is deleted again). The client's file name is
    sanitised and used only as the last segment of the key.
    """
    name = sanitize_filename(filename or "")
    job_id = new_id()
    key = source_key(job_id, name)
    storage = get_storage(settings.storage_url)
    storage.move_file(key, path)
    try:
        with session_scope(settings.database_url) as session:
            job = repository.create_job(
                session,
                job_id=job_id,
                source_name=name,
                source_key=key,
                priority=priority,
                owner_key_id=owner_key_id,
                metadata=metadata,
                source_size=size,
                idempotency_key=idempotency_key,
            )
            created = job.id == job_id
            if created:
                job = repository.set_probe(session, job_id, probe_summary)
            # Load everything now: the caller serialises it after the session closes.
            session.refresh(job)
    except BaseException:
        storage.delete_prefix(source_prefix(job_id))
        raise
    if not created:
        storage.delete_prefix(source_prefix(job_id))
    return job, created
