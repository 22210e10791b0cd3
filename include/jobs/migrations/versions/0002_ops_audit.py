"""Operations audit: retention_audit, retention_items, ops_runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02 00:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_audit",
        sa.Column("id", sa.String(250), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'running'"), nullable=False),
        sa.Column("policies", sa.JSON(), nullable=False),
        sa.Column("jobs_deleted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sources_deleted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("jobs_skipped", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("objects_deleted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("bytes_freed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_retention_audit"),
    )

    op.create_table(
        "retention_items",
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("job_status", sa.String(16), nullable=False),
        sa.Column("job_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("object_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("byte_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("objects_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("objects_done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows_done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["retention_audit.id"],
            name="fk_retention_items_run_id_retention_audit",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "job_id", name="pk_retention_items"),
    )
    op.create_index("ix_retention_items_job_id", "retention_items", ["job_id"])

    op.create_table(
        "ops_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("object_key", sa.String(1024), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ops_runs"),
    )
    op.create_index("ix_ops_runs_kind_started", "ops_runs", ["kind", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_ops_runs_kind_started", table_name="ops_runs")
    op.drop_table("ops_runs")
    op.drop_index("ix_retention_items_job_id", table_name="retention_items")
    op.drop_table("retention_items")
    op.drop_table("retention_audit")
