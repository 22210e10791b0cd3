"""Application database tables (SQLAlchemy 2 declarative).

Portable between SQLite (local default) and PostgreSQL (production): generic
JSON, string ids, UTC-aware timestamps. The Alembic migrations in
``migrations/versions`` must match these definitions; a test compares them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from include.jobs.states import JobStatus

# Named constraints: SQLite batch migrations can only alter what has a name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type and hands back naive values; storing UTC and
    re-attaching UTC on read keeps comparisons and JSON output consistent.
    Naive input is refused because its meaning is ambiguous.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 hex of the key; the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, name={self.name!r})"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # One job per (owner, idempotency key): a retried upload returns the
        # first job instead of transcoding twice.
        UniqueConstraint("owner_key_id", "idempotency_key"),
        # Serves pickup: WHERE status='pending' ORDER BY priority, created_at.
        Index("ix_jobs_status_priority_created", "status", "priority", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_key_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("api_keys.id"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(
        String(16), index=True, default=JobStatus.PENDING.value, server_default=text("'pending'")
    )
    priority: Mapped[int] = mapped_column(Integer, default=5, server_default=text("5"))
    # Nullable because the key is known only once the upload is stored.
    source_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    source_name: Mapped[str] = mapped_column(String(512))
    source_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # "metadata" is reserved on declarative classes, hence the attribute name.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    airflow_run_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    renditions: Mapped[list[RenditionRun]] = relationship(
        back_populates="job",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="RenditionRun.rendition",
    )

    @property
    def status_enum(self) -> JobStatus:
        return JobStatus(self.status)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, status={self.status!r}, priority={self.priority!r})"


class RenditionRun(Base):
    """Provenance of one encoded rendition: what made it, where, how fast."""

    __tablename__ = "rendition_runs"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    rendition: Mapped[str] = mapped_column(String(64), primary_key=True)
    encoder: Mapped[str] = mapped_column(String(64))
    fell_back: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    fallback_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    ffmpeg_version: Mapped[str] = mapped_column(String(255))
    command: Mapped[list[str]] = mapped_column(JSON)
    host: Mapped[str] = mapped_column(String(255))
    encode_seconds: Mapped[float] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bitrate_kbps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    job: Mapped[Job] = relationship(back_populates="renditions")

    def __repr__(self) -> str:
        return f"RenditionRun(job_id={self.job_id!r}, rendition={self.rendition!r})"


# --------------------------------------------------------------------------
# Operations audit (retention, backups, drills): migration 0002
# --------------------------------------------------------------------------


class RetentionAudit(Base):
    """One apply_retention run: what it was told, what it removed.

    ``id`` is the Airflow run id, so retries and clears of the same run find
    and resume their own audit row instead of planning again.
    """

    __tablename__ = "retention_audit"

    id: Mapped[str] = mapped_column(String(250), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    # running -> finished; a run superseded while still running -> interrupted.
    status: Mapped[str] = mapped_column(String(16), default="running", server_default=text("'running'"))
    policies: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    jobs_deleted: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    sources_deleted: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    jobs_skipped: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    objects_deleted: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    bytes_freed: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def __repr__(self) -> str:
        return f"RetentionAudit(id={self.id!r}, status={self.status!r}, dry_run={self.dry_run!r})"


class RetentionItem(Base):
    """One job a retention run planned to purge, with its progress.

    The timestamps make the purge resumable: objects are deleted only while
    ``objects_done_at`` is empty and the row only while ``rows_done_at`` is,
    so a rerun after a crash finishes the work without counting anything
    twice. ``job_id`` has no foreign key: the job row is what gets deleted.
    """

    __tablename__ = "retention_items"

    run_id: Mapped[str] = mapped_column(
        String(250), ForeignKey("retention_audit.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    # purge_job: sources, outputs, staging and the row; purge_source: the upload only.
    action: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str] = mapped_column(String(64))
    job_status: Mapped[str] = mapped_column(String(16))
    job_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Dry run: what would go. Real run: what was listed right before deleting.
    object_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    byte_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    objects_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    objects_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rows_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    skipped_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    def __repr__(self) -> str:
        return f"RetentionItem(run_id={self.run_id!r}, job_id={self.job_id!r}, action={self.action!r})"


class OpsRun(Base):
    """History of backups and disaster-recovery drills (also in storage and metrics)."""

    __tablename__ = "ops_runs"
    __table_args__ = (Index("ix_ops_runs_kind_started", "kind", "started_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))  # backup | drill
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # succeeded | failed
    # The manifest (backup) or report (drill) in object storage.
    object_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def __repr__(self) -> str:
        return f"OpsRun(id={self.id!r}, kind={self.kind!r}, status={self.status!r})"
