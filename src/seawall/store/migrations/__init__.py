"""Alembic migrations of seawall's tables (run by `seawall.store.migrate`, never imported)."""
