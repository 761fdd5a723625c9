"""API keys (stored hashed), idempotency records and budget periods."""

from datetime import datetime

from sqlalchemy import Boolean, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, UTCDateTime, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the key, shown in listings so a key can be recognised.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Signs this caller's webhooks (HMAC-SHA256); shown once, with the key, at creation.
    webhook_secret: Mapped[str] = mapped_column(String(64))
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    # The highest priority its jobs may ask for (high, normal or low), and its share of
    # capacity against other keys' (`app.scheduler.fair`); unset: the settings' defaults.
    max_priority: Mapped[str | None] = mapped_column(String(8))
    weight: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Space-separated scopes (`app.accounts.scopes`); unset: every scope but admin, plus admin
    # when `is_admin` (keys made before scopes).
    scopes: Mapped[str | None] = mapped_column(String(200))
    # A publishable key's web origins, space-separated: it is refused from any other origin.
    origins: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    creates_per_minute: Mapped[int | None] = mapped_column(Integer)
    daily_budget_usd: Mapped[float | None] = mapped_column(Float)
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float)
    # Where account events go (`budget.threshold`), signed with `webhook_secret`.
    webhook_url: Mapped[str | None] = mapped_column(Text)


class IdempotencyRecord(Base):
    """What an `Idempotency-Key` produced, so a retried request gets the same resource."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(16))
    resource_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class BudgetPeriod(Base):
    """One owner's day or month (`2026-12-05`, `2026-12`): the row that admissions lock to check
    the budget one at a time, and the highest threshold (80, 100) already notified."""

    __tablename__ = "budget_periods"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    notified_percent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
