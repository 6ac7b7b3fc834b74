"""`twin serve`, `twin keys` and `twin audit`: the serving commands of the `twin` CLI."""

from __future__ import annotations

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


@keys.command("create")
@click.option("--name", required=True, help="Who uses the key (the MES, a person).")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["predict", "work-orders", "admin"]))
@click.option("--db", "database_url", help="SQLAlchemy URL (default TWIN_DATABASE_URL).")
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


from serving._cli_audit import audit  # noqa: E402  (the store's own command group)
