"""Opening the database: one engine per process, configured for several writers.

The service runs as several uvicorn workers, each with its own engine. On SQLite they
share one file, so every connection uses WAL (readers do not block the writer), waits up
to 30 s for a lock instead of failing, and starts each transaction with
``BEGIN IMMEDIATE``: the write lock is taken at the start, so two workers serialize at
BEGIN rather than both reading and then one failing with "database is locked" when it
tries to write. pysqlite's own implicit transaction handling is switched off for that,
and SQLAlchemy's ``begin`` event emits the BEGIN itself. On PostgreSQL the rows that
must not race (counters, assets) are locked with ``SELECT ... FOR UPDATE`` by the
modules that use them.

Counters (``lock_counter``) are the one place where numbers are handed out: the audit
chain head and each event subject's sequence. A counter row stays locked until the
caller's transaction ends, so the numbers are gapless and unique, and a rollback gives
its number back. The first use of a subject creates the row with
insert-on-conflict-do-nothing, so two first uses at once cannot both insert it.

The schema is owned by the Alembic migrations in ``serving/store/migrations``;
``open_store`` brings the database to the latest revision unless told not to.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import Engine, bindparam, create_engine, event, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from serving.store._tables import SubjectCounter, table_of

__all__ = [
    "AUDIT_SUBJECT",
    "DEFAULT_URL",
    "Store",
    "StoreError",
    "aware",
    "downgrade",
    "lock_counter",
    "next_seq",
    "open_store",
    "set_counter",
    "text_limit",
    "upgrade",
]

DEFAULT_URL = "sqlite:///twin.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
EXPECTED_URL = (
    "sqlite:///path/to/twin.db, or postgresql://user:password@host:5432/dbname "
    "(postgresql+psycopg:// is the same)"
)
# Any constant will do: it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 0x7477696E  # "twin"

Dialect = Literal["sqlite", "postgresql"]
AUDIT_SUBJECT = "audit"  # the counters row that holds the audit chain head


class StoreError(ValueError):
    """A value the store cannot use: which field, the value (secrets masked), and what
    was expected instead."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}: expected {expected}, got {value!r}")


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``, also when it does not parse."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def text_limit(column: Any) -> int:
    """The length of a ``String(n)`` column, checked here because SQLite does not."""
    length = getattr(column.type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"column {column.name!r} has no length, it is {column.type!r}")
    return length


def _parse(url: str | URL) -> URL:
    """Validate the URL and rewrite ``postgresql://`` to the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("database url", mask_url(url), EXPECTED_URL) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise StoreError("database url", mask_url(parsed), "the sqlite driver pysqlite")
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise StoreError(
                "database url",
                mask_url(parsed),
                "a SQLite file such as sqlite:///twin.db (an in-memory database is private "
                "to one connection, so workers and threads would not share it)",
            )
        folder = Path(database).expanduser().resolve().parent
        if not parsed.query.get("uri") and not folder.is_dir():
            raise StoreError(
                "database url", mask_url(parsed), f"a file in an existing folder ({folder})"
            )
        return parsed
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise StoreError(
                "database url",
                mask_url(parsed),
                f"the psycopg 3 driver (postgresql+psycopg://), not {driver!r}",
            )
        return parsed.set(drivername="postgresql+psycopg")
    raise StoreError("database url", mask_url(parsed), EXPECTED_URL)


def aware(t: datetime) -> datetime:
    """A stored time with its offset (SQLite hands back naive UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # None switches off pysqlite's implicit BEGIN/COMMIT; _sqlite_on_begin takes over.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=30000")
        # Switching a new file to WAL takes an exclusive lock, and SQLite answers "database
        # is locked" at once (no busy wait) while another connection is doing the same:
        # workers starting together retry for up to the busy timeout.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL with synchronous=NORMAL is durable against application crashes and
        # consistent after power loss; FULL would fsync on every commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = "DEFERRED" if conn.get_execution_options().get("twin_readonly") else "IMMEDIATE"
    conn.exec_driver_sql(f"BEGIN {mode}")


def _json_text(value: Any) -> str:
    """A JSON column's text, by orjson (an assessment's answer, some 30 kB, is stored with
    it; the standard library's encoder takes several times longer). What orjson refuses,
    an integer beyond 64 bits that a caller sent, goes through the standard encoder, as
    before. Read back by the standard decoder, which gives the same values."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS
                            | orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return json.dumps(value)


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            json_serializer=_json_text,
            connect_args={"timeout": 30, "check_same_thread": False},
            # No pre-ping: a connection to a local file does not go stale, and the ping
            # was a sixth of an assessment's time in the store.
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(
        url,
        json_serializer=_json_text,
        pool_size=10,
        max_overflow=20,
        pool_timeout=30,
        pool_recycle=1800,  # below common idle-connection timeouts of proxies
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10},
    )


class Store:
    """The database of one process: an engine and the sessions made from it.

    Build it with ``open_store``; one per process, shared by all requests.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite lets one writer in at a time, and a connection that finds the lock
        # taken polls for it (sleeps of up to 100 ms in its busy handler), so under load
        # the requests of one process would queue behind sleeps rather than behind each
        # other: here they wait on a lock that hands over the moment it is released.
        # Other processes (uvicorn workers) still meet at SQLite's own lock.
        self._writer = _WriterLock() if engine.dialect.name == "sqlite" else None
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readonly = sessionmaker(
            engine.execution_options(**_readonly_options(engine)), expire_on_commit=False
        )

    @property
    def dialect(self) -> Dialect:
        name = self.engine.dialect.name
        return "sqlite" if name == "sqlite" else "postgresql"

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session inside one transaction: committed when the block ends, rolled back
        when it raises.

        ``readonly=True`` is for reports that span many queries (``verify_chain``): one
        consistent snapshot, and on SQLite no write lock, so it does not hold up writers.
        """
        if readonly or self._writer is None:
            factory = self._readonly if readonly else self._sessions
            with factory() as session, session.begin():
                yield session
            return
        with self._writer, self._sessions() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Raise if the database cannot be reached; for health checks.

        Takes no write lock on SQLite, so a busy writer cannot make it hang.
        """
        with self.engine.connect().execution_options(twin_readonly=True) as conn:
            conn.execute(text("SELECT 1"))
            conn.rollback()

    def close(self) -> None:
        """Close every pooled connection; the store is not usable afterwards."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({mask_url(self.engine.url)!r})"


class _WriterLock:
    """The write lock of one process's SQLite sessions, with an error rather than a
    deadlock when a thread asks for it twice (a write session opened inside another
    would wait for itself)."""

    TIMEOUT_S = 30.0  # as SQLite's busy timeout

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __enter__(self) -> None:
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError("a write session was opened inside another one on the same "
                               "thread; SQLite has one writer, so it would wait for itself")
        if not self._lock.acquire(timeout=self.TIMEOUT_S):
            raise sqlite3.OperationalError(
                f"database is locked: no write turn within {self.TIMEOUT_S:.0f} s")
        self._owner = me

    def __exit__(self, *exc: object) -> None:
        self._owner = None
        self._lock.release()


def _readonly_options(engine: Engine) -> dict[str, Any]:
    if engine.dialect.name == "sqlite":
        return {"twin_readonly": True}  # a deferred BEGIN is already one WAL snapshot
    return {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


def open_store(url: str = DEFAULT_URL, *, migrate: bool = True) -> Store:
    """Open the database at ``url`` and, with ``migrate``, bring its schema to the latest
    migration (safe when several workers start at once)."""
    engine = _make_engine(_parse(url))
    if migrate:
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
    return Store(engine)


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _run_alembic(url_or_engine: str | Engine, action: str, revision: str) -> None:
    from alembic import command

    engine = url_or_engine if isinstance(url_or_engine, Engine) else None
    if engine is None:
        engine = _make_engine(_parse(str(url_or_engine)))
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Workers that start together migrate one after the other; SQLite's
                # BEGIN IMMEDIATE already does the same.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            getattr(command, action)(_alembic_config(conn), revision)
    finally:
        if not isinstance(url_or_engine, Engine):
            engine.dispose()


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Run ``alembic upgrade`` on the database, in one transaction."""
    _run_alembic(url_or_engine, "upgrade", revision)


def downgrade(url_or_engine: str | Engine, revision: str = "base") -> None:
    """Run ``alembic downgrade``; ``base`` drops every table the migrations made."""
    _run_alembic(url_or_engine, "downgrade", revision)


# The counter statements, built once: they run several times in every write transaction,
# straight on the session's connection (the ORM's unit of work has nothing to add here).
_COUNTERS = table_of(SubjectCounter)
_SELECT_COUNTER = (
    select(_COUNTERS.c.last_seq, _COUNTERS.c.last_hash)
    .where(_COUNTERS.c.subject == bindparam("key"))
    .with_for_update()
)
_SET_COUNTER = (
    update(_COUNTERS)
    .where(_COUNTERS.c.subject == bindparam("key"))
    .values(last_seq=bindparam("seq"), last_hash=bindparam("head"))
)
_NEXT_SEQ = (
    update(_COUNTERS)
    .where(_COUNTERS.c.subject == bindparam("key"))
    .values(last_seq=_COUNTERS.c.last_seq + 1)
    .returning(_COUNTERS.c.last_seq)
)


def _create_counter(session: Session, subject: str) -> None:
    """The counter row of ``subject`` at 0, unless it exists (also when another
    transaction creates it at the same moment)."""
    insert: Any = (
        postgresql.insert(_COUNTERS)
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert(_COUNTERS)
    )
    session.connection().execute(
        insert.values(subject=subject, last_seq=0, last_hash="").on_conflict_do_nothing(
            index_elements=["subject"]
        )
    )


def _counter_row(session: Session, subject: str, statement: Any) -> Any:
    """``statement``'s row on the counter of ``subject``, the counter created at 0 first
    where it is missing."""
    conn = session.connection()
    row = conn.execute(statement, {"key": subject}).first()
    if row is None:
        _create_counter(session, subject)
        row = conn.execute(statement, {"key": subject}).first()
        if row is None:  # pragma: no cover - the insert above guarantees the row
            raise RuntimeError(f"counter row {subject!r} missing right after its insert")
    return row


def lock_counter(session: Session, subject: str) -> tuple[int, str]:
    """Lock the counter row of ``subject`` (creating it at 0) until the transaction
    ends, and return its ``(last_seq, last_hash)``.

    ``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite has no row locks and needs none, as
    every write transaction holds the database's write lock from ``BEGIN IMMEDIATE``.
    """
    row = _counter_row(session, subject, _SELECT_COUNTER)
    return int(row[0]), str(row[1])


def next_seq(session: Session, subject: str) -> int:
    """The next number of ``subject``'s counter (1 on first use), its row locked until
    the transaction ends: one ``UPDATE ... RETURNING``, which locks the row as
    ``lock_counter`` does, when only the number is needed."""
    return int(_counter_row(session, subject, _NEXT_SEQ)[0])


def set_counter(session: Session, subject: str, last_seq: int, last_hash: str = "") -> None:
    """Store the new head of a counter that ``lock_counter`` locked in this transaction."""
    session.connection().execute(
        _SET_COUNTER, {"key": subject, "seq": last_seq, "head": last_hash}
    )
