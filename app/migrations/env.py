"""Alembic environment: runs on the connection handed over by `app.core.migrate`."""

from alembic import context
from sqlalchemy import Connection

# Imported for their side effect: registering the tables on Base.metadata.
from app.accounts import models as account_models  # noqa: F401
from app.core.db import Base
from app.jobs import models as job_models  # noqa: F401
from app.notify import models as notify_models  # noqa: F401
from app.scheduler import models as scheduler_models  # noqa: F401


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
