"""Fixtures for the serving tests: one store per test, on SQLite and on PostgreSQL.

``store_url`` runs each test twice: on a SQLite file of its own, and on the PostgreSQL
server on 127.0.0.1:5432 (database ``test``) inside a schema of its own, so parallel
runs and other test modules never see each other's rows. Without a reachable server the
PostgreSQL case is skipped, except on CI (``CI`` set), where it fails: there the server
is part of the job and its absence is a broken job, not a reason to test less.
``TWIN_TEST_PG_URL`` points the tests at another server.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

if TYPE_CHECKING:
    from serving.store import Store

PG_URL = os.environ.get("TWIN_TEST_PG_URL", "postgresql+psycopg://127.0.0.1:5432/test")
_PG_USERS = ("postgres", getpass.getuser())


def _pg_admin_url() -> tuple[str | None, str]:
    """A URL that connects, or None and why not (tried ``postgres``, then this user)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    users = (base.username,) if base.username else _PG_USERS
    reasons = []
    for user in dict.fromkeys(users):
        url = base.set(username=user)
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return url.render_as_string(hide_password=False), ""
        except Exception as exc:  # any failure to connect means "no server for us"
            reasons.append(f"{user}: {str(exc).strip().splitlines()[0]}")
        finally:
            engine.dispose()
    return None, "; ".join(reasons)


@pytest.fixture(scope="session")
def _pg_admin() -> str:
    url, why = _pg_admin_url()
    if url is None:
        where = make_safe(PG_URL)
        message = f"PostgreSQL at {where} is not reachable ({why})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so the PostgreSQL tests must run")
        pytest.skip(f"{message}; set TWIN_TEST_PG_URL or start the server to run them")
    return url


def make_safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL private to this test: a SQLite file, or a fresh PostgreSQL schema
    that the URL's ``options`` put first on the search path (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'twin.db'}"
        return

    from sqlalchemy import create_engine, text

    admin = request.getfixturevalue("_pg_admin")
    schema = f"twin_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in admin else "?"
        yield f"{admin}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open, migrated store on ``store_url``; closed after the test."""
    from serving.store import open_store

    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def db(store: Store) -> Iterator[object]:
    """The store's session factory and dialect, for the event-delivery tests."""
    from tests.serving._db import Db

    yield Db(session=store.session, dialect=store.engine.dialect.name)
