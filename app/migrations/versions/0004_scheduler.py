"""scheduler: priority, fair tag, route and endpoint on jobs; fair-queue and endpoint state

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("route", sa.String(length=64), nullable=False, server_default="default")
        )
        batch_op.add_column(sa.Column("endpoint", sa.String(length=96), nullable=True))
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="1")
        )
        batch_op.add_column(sa.Column("fair_tag", sa.Float(), nullable=False, server_default="0"))
        batch_op.create_index(
            "ix_jobs_dispatch_order", ["status", "route", "priority", "fair_tag"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_endpoint_finished_at", ["endpoint", "finished_at"], unique=False
        )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("endpoint", sa.String(length=96), nullable=True))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_priority", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("weight", sa.Float(), nullable=True))
    op.create_table(
        "fair_queues",
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("last_tag", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("route", "priority", "owner", name=op.f("pk_fair_queues")),
    )
    op.create_table(
        "queue_clocks",
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("virtual_time", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("route", "priority", name=op.f("pk_queue_clocks")),
    )
    op.create_table(
        "endpoint_states",
        sa.Column("endpoint", sa.String(length=96), nullable=False),
        sa.Column("route", sa.String(length=64), nullable=False),
        sa.Column("checked_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("workers", sa.JSON(), nullable=False),
        sa.Column("jobs", sa.JSON(), nullable=False),
        sa.Column("max_in_flight", sa.Integer(), nullable=False),
        sa.Column("service_rate", sa.Float(), nullable=False),
        sa.Column("queue_delay_p50_ms", sa.Integer(), nullable=True),
        sa.Column("execution_p50_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("endpoint", name=op.f("pk_endpoint_states")),
    )


def downgrade() -> None:
    op.drop_table("endpoint_states")
    op.drop_table("queue_clocks")
    op.drop_table("fair_queues")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("weight")
        batch_op.drop_column("max_priority")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("endpoint")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_endpoint_finished_at")
        batch_op.drop_index("ix_jobs_dispatch_order")
        batch_op.drop_column("fair_tag")
        batch_op.drop_column("priority")
        batch_op.drop_column("endpoint")
        batch_op.drop_column("route")
