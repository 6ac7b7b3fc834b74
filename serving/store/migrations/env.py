"""Alembic environment of the store: run by ``serving.store.upgrade``, never by an ini file.

``upgrade`` hands over an open connection (in ``config.attributes["connection"]``) whose
transaction it owns, so every migration of one upgrade commits or rolls back together.
The ``alembic`` command line works too, given ``-x url=...`` or ``TWIN_DATABASE_URL``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from serving.store._tables import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from serving.store._db import DEFAULT_URL, _make_engine, _parse

    url = context.get_x_argument(as_dictionary=True).get("url")
    engine = _make_engine(_parse(url or os.environ.get("TWIN_DATABASE_URL", DEFAULT_URL)))
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the store's migrations run online only: give them a database")
run_migrations_online()
