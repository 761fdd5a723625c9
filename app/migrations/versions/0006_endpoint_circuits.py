"""endpoint_states: each endpoint's circuit (closed, open, half_open) and its failure counts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.core.db import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("endpoint_states", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("circuit", sa.String(16), nullable=False, server_default="closed")
        )
        batch_op.add_column(sa.Column("circuit_reason", sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("circuit_since", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("retry_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("trips", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("run_failures", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("endpoint_states", schema=None) as batch_op:
        for column in ("run_failures", "trips", "retry_at", "circuit_since", "circuit_reason"):
            batch_op.drop_column(column)
        batch_op.drop_column("circuit")
