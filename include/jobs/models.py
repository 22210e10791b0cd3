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
