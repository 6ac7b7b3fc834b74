"""`twin serve`, `twin keys` and `twin audit`: the serving commands of the `twin` CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

__all__ = ["audit", "keys", "serve"]


@click.command()
@click.option("--model", "models", multiple=True,
              help="Bundle folder or models:/<name>@<alias> (repeat; default TWIN_MODELS).")
@click.option("--db", "database_url", help="SQLAlchemy URL (default TWIN_DATABASE_URL).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int,
              help="uvicorn worker processes; all state lives in the database.")
@click.option("--dev", "dev_mode", is_flag=True, help="No authentication (for a laptop).")
def serve(models: tuple[str, ...], database_url: str | None, host: str, port: int,
          workers: int, dev_mode: bool) -> None:
    """Serve the MES decision API with uvicorn."""
    import os

    import uvicorn

    from serving._settings import Settings

    if models:
        os.environ["TWIN_MODELS"] = ",".join(models)
    if database_url:
        os.environ["TWIN_DATABASE_URL"] = database_url
    if dev_mode:
        os.environ["TWIN_DEV_MODE"] = "true"
    settings = Settings.from_env()  # fail here, before workers start, on a bad value
    from serving.store._db import open_store

    open_store(settings.database_url).close()  # migrate once, before the workers
    uvicorn.run("serving.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="info", access_log=False)


@click.group()
def keys() -> None:
    """API keys of the service."""


_DB_OPTION = click.option("--db", "--database-url", "database_url",
                          help="SQLAlchemy URL (default TWIN_DATABASE_URL).")


@keys.command("create")
@click.option("--name", required=True, help="Who uses the key (the MES, a person).")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["predict", "work-orders", "admin"]))
@_DB_OPTION
def create(name: str, scopes: tuple[str, ...], database_url: str | None) -> None:
    """Create a key and print it: the only time its secret is shown."""
    from serving._auth import create_key
    from serving._settings import Settings
    from serving.store._db import open_store

    settings = Settings.from_env(database_url=database_url)
    store = open_store(settings.database_url)
    try:
        with store.session() as s:
            token = create_key(s, name, list(scopes))
    finally:
        store.close()
    click.echo(token)



@keys.command("list")
@_DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key, a line each.")
def list_keys(database_url: str | None, as_json: bool) -> None:
    """Every key, oldest first: id, name, scopes, created, revoked (never a secret)."""
    import json

    from sqlalchemy import select

    from serving.store._tables import ApiKey

    with _store(database_url) as store, store.session(readonly=True) as s:
        rows = [{"id": k.id, "name": k.name, "scopes": sorted(k.scopes),
                 "created": _aware(k.created_at).isoformat(timespec="seconds"),
                 "revoked": bool(k.revoked)}
                for k in s.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo("no API keys (twin keys create makes one)")
        return
    table = [("ID", "NAME", "SCOPES", "CREATED", "REVOKED")] + [
        (r["id"], r["name"], ",".join(r["scopes"]), r["created"], "yes" if r["revoked"] else "no")
        for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@keys.command("revoke")
@click.argument("key_id")
@_DB_OPTION
def revoke(key_id: str, database_url: str | None) -> None:
    """Revoke the key KEY_ID (its id, as twin keys list shows it)."""
    from serving._auth import PREFIX, revoke_key
    from serving.store._db import mask_url
    from serving.store._tables import ApiKey

    if key_id.startswith(PREFIX):  # a whole key was pasted: never echo its secret
        raise click.ClickException("pass the key's id (twin keys list shows it), not the key")
    with _store(database_url) as store, store.session() as s:
        row = s.get(ApiKey, key_id)
        was_revoked = row is not None and row.revoked
        if not revoke_key(s, key_id):
            raise click.ClickException(
                f"no API key with id {key_id!r} in {mask_url(store.engine.url)}: "
                "twin keys list shows the ids")
        assert row is not None
        name = row.name
    if was_revoked:
        click.echo(f"key {key_id} ({name}) was already revoked")
        return
    cache_s = _settings(database_url).key_cache_s
    click.echo(f"revoked key {key_id} ({name}); a running service refuses it within "
               f"{cache_s:g} s (TWIN_KEY_CACHE_S)")


def _settings(database_url: str | None) -> Any:
    from serving._settings import Settings

    return Settings.from_env(database_url=database_url)


@contextmanager
def _store(database_url: str | None) -> Iterator[Any]:
    from serving.store._db import open_store

    store = open_store(_settings(database_url).database_url)
    try:
        yield store
    finally:
        store.close()


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


from serving._cli_audit import audit  # noqa: E402  (the store's own command group)
