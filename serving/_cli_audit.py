"""``twin audit``: check the audit trail from the command line.

``twin audit verify`` recomputes the hash chain and exits 0 when it holds, 1 when a
record was changed, removed or reordered (naming the first one), and 2 when it could
not check at all (bad URL, no database, no audit table). It only reads: it never
migrates or creates a database, and on SQLite it takes no write lock, so it can run
next to a live service.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import click

__all__ = ["audit"]

_EXIT_BROKEN = 1
_EXIT_CANNOT_CHECK = 2


@click.group()
def audit() -> None:
    """The audit trail of the decision service."""


@audit.command("verify")
@click.option(
    "--db",
    "database_url",
    default=lambda: os.environ.get("TWIN_DATABASE_URL", "sqlite:///twin.db"),
    show_default="TWIN_DATABASE_URL, else sqlite:///twin.db",
    help="SQLAlchemy URL of the service's database.",
)
def verify(database_url: str) -> None:
    """Recompute the hash chain; name the first broken record."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from serving.store._audit import verify_chain
    from serving.store._db import StoreError, mask_url, open_store

    try:
        url = make_url(database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            path = Path(url.database).expanduser()
            if not path.is_file():
                _cannot_check(f"no database at {path} (from --db {mask_url(database_url)})")
        store = open_store(database_url, migrate=False)
    except (StoreError, ArgumentError) as exc:
        _cannot_check(str(exc) if isinstance(exc, StoreError) else f"--db: {exc}")
    try:
        with store.session(readonly=True) as session:
            report = verify_chain(session)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        _cannot_check(f"cannot read the audit trail of {mask_url(store.engine.url)}: {first}")
    finally:
        store.close()
    if report.ok:
        click.echo(f"audit chain OK: {report.records} records")
        return
    click.echo(f"audit chain BROKEN at record {report.first_broken}: {report.reason}")
    raise SystemExit(_EXIT_BROKEN)


def _cannot_check(message: str) -> NoReturn:
    click.echo(f"audit chain NOT CHECKED: {message}", err=True)
    raise SystemExit(_EXIT_CANNOT_CHECK)
