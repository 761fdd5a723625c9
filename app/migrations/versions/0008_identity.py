"""api_keys: scopes, origins, expiry, create limit, budgets, account webhook URL;
budget_periods

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.core.db import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("origins", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("creates_per_minute", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("daily_budget_usd", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("monthly_budget_usd", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("webhook_url", sa.Text(), nullable=True))
    op.create_table(
        "budget_periods",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("notified_percent", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("owner", "period", name=op.f("pk_budget_periods")),
    )


def downgrade() -> None:
    op.drop_table("budget_periods")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        for column in (
            "webhook_url",
            "monthly_budget_usd",
            "daily_budget_usd",
            "creates_per_minute",
            "expires_at",
            "origins",
            "scopes",
        ):
            batch_op.drop_column(column)
