"""``POST /api/upload``: accept a video and create its pending job.

Cheap checks first (header, form fields, an existing job for the same
Idempotency-Key), then the probe gate on the scratch file (magic bytes, then
ffprobe with the demuxer forced, limits, a short decode), and only then is
the file stored and the job created. The API never transcodes: the
``pickup_jobs`` DAG claims the pending row.

Status codes: 400 bad form/header, 413 body or metadata too large, 415 not
a video in a supported container, 422 a video that breaks the limits or is
damaged.
"""

from __future__ import annotations

import logging
from typing import cast

from flask import Blueprint, Response, jsonify, request

from api import app_settings, db_session
from api.auth import current_key_id
from api.errors import ApiError
from api.health import UPLOAD_BYTES, UPLOADS
from api.intake import (
    UploadRequest,
    find_idempotent,
    parse_idempotency_key,
    parse_metadata,
    parse_priority,
    store_upload,
)
from api.jobs import job_json
from include.errors import InputRejected, UnsupportedMedia
from include.media.probe import probe

log = logging.getLogger(__name__)

bp = Blueprint("upload", __name__)

FILE_FIELD = "file"


@bp.post("/api/upload")
def upload() -> Response:
    settings = app_settings()
    owner = current_key_id()
    idempotency_key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    # Reading request.files streams the whole body to scratch (413 past the limit).
    uploaded = request.files.get(FILE_FIELD)
    if uploaded is None:
        raise ApiError(
            400, "missing_file", f"Send the video as multipart/form-data in a file field named '{FILE_FIELD}'."
        )
    priority = parse_priority(request.form.get("priority"))
    metadata = parse_metadata(request.form.get("metadata"))

    if idempotency_key is not None:
        with db_session() as session:
            existing = find_idempotent(session, owner, idempotency_key)
            if existing is not None:
                UPLOADS.labels(outcome="duplicate").inc()
                log.info("upload from key %s repeats Idempotency-Key of job %s", owner, existing.id)
                return jsonify(job_json(existing))

    path = cast(UploadRequest, request).scratch_path(uploaded.stream)
    size = path.stat().st_size
    try:
        result = probe(path, settings)
    except UnsupportedMedia as exc:
        UPLOADS.labels(outcome="rejected").inc()
        log.info("upload from key %s rejected (415): %s", owner, exc)
        raise ApiError(415, "unsupported_media_type", str(exc)) from None
    except InputRejected as exc:
        UPLOADS.labels(outcome="rejected").inc()
        log.info("upload from key %s rejected (422): %s", owner, exc)
        raise ApiError(422, "invalid_media", str(exc)) from None

    job, created = store_upload(
        path,
        settings=settings,
        owner_key_id=owner,
        filename=uploaded.filename,
        priority=priority,
        metadata=metadata,
        idempotency_key=idempotency_key,
        probe_summary=result.to_dict(),
        size=size,
    )
    if created:
        UPLOADS.labels(outcome="accepted").inc()
        UPLOAD_BYTES.inc(size)
        log.info(
            "upload accepted: job %s, key %s, from %s, %d bytes, %s %dx%d %.1f s",
            job.id, owner, request.remote_addr, size, result.demuxer,
            result.video.display_width, result.video.display_height, result.duration_s,
        )  # fmt: skip
    else:
        UPLOADS.labels(outcome="duplicate").inc()
    return jsonify(job_json(job))
