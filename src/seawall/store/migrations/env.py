"""Alembic's environment: runs the migrations on what `seawall.store.migrate` hands over.

Online, the caller passes an open connection in a transaction (`attributes["connection"]`),
so the caller's lock and transaction cover the whole upgrade. Offline (`sql=True`), only the
dialect's name is needed (`attributes["dialect_name"]`) and the SQL is written out instead.
"""

from __future__ import annotations

from alembic import context

config = context.config
target_metadata = config.attributes.get("target_metadata")


def run_offline() -> None:
    context.configure(
        dialect_name=config.attributes["dialect_name"],
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("seawall's migrations run through seawall.store.migrate.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: autogenerate writes copy-and-move batch operations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
