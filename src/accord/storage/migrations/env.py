"""Alembic environment: uses the engine handed in by accord.storage.migrate."""

from __future__ import annotations

from alembic import context

from accord.storage import banks, schema, translog

# Every table the server owns: messaging, hash banks, the transparency log.
target_metadata = [schema.metadata, banks.metadata, translog.metadata]

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
