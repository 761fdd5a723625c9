"""The migrations build exactly the schema the models describe, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.core.db import Base, Database
from app.core.migrate import upgrade_database


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    database = Database(database_url)
    try:
        upgrade_database(database)
        with database.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        database.dispose()
    assert differences == []
