"""Alembic environment: runs on the connection handed over by `app.core.migrate`."""

from alembic import context
from sqlalchemy import Connection

from app.core.db import Base
from app.jobs import models  # noqa: F401 - registers the tables on Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations(context.config.attributes["connection"])
