"""Alembic migrations of the store. :meth:`store.Store.migrate` runs them programmatically."""
