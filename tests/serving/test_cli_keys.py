"""``twin keys create | list | revoke`` through click's runner on a SQLite store: the list
shows every key without its secret, a revoked key is refused by the key check, and an
unknown id is exit code 1 with a message that names it."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

ENV = {"TWIN_KEY_CACHE_S": "5", "TWIN_DATABASE_URL": "sqlite:///not-this-one.db"}


def twin_keys(*args: str) -> Result:
    from serving.cli import keys

    return CliRunner().invoke(keys, list(args), env=ENV, catch_exceptions=False)


def test_list_shows_every_key_but_no_secret_and_revoke_takes_it_away(tmp_path: Path) -> None:
    from serving._auth import KeyChecker
    from serving._errors import Unauthorized
    from serving.store._db import open_store
    from serving.store._tables import ApiKey

    db = f"sqlite:///{tmp_path / 'twin.db'}"
    assert twin_keys("list", "--db", db).output == "no API keys (twin keys create makes one)\n"
    mes = twin_keys("create", "--name", "mes-line-1", "--scope", "work-orders", "--scope",
                    "predict", "--db", db)
    ops = twin_keys("create", "--name", "ops", "--scope", "admin", "--database-url", db)
    assert mes.exit_code == 0 and ops.exit_code == 0
    mes_key, ops_key = mes.output.strip(), ops.output.strip()
    mes_id, ops_id = mes_key.split("_")[1], ops_key.split("_")[1]

    store = open_store(db)
    try:
        with store.session(readonly=True) as s:
            created = {k.id: k.created_at.replace(tzinfo=UTC).isoformat(timespec="seconds")
                       for k in s.query(ApiKey)}
        listed = twin_keys("list", "--database-url", db, "--json")
        assert listed.exit_code == 0
        assert [json.loads(line) for line in listed.output.splitlines()] == [
            {"id": mes_id, "name": "mes-line-1", "scopes": ["predict", "work-orders"],
             "created": created[mes_id], "revoked": False},
            {"id": ops_id, "name": "ops", "scopes": ["admin"], "created": created[ops_id],
             "revoked": False},
        ]
        table = twin_keys("list", "--db", db).output
        assert [line.split() for line in table.splitlines()] == [
            ["ID", "NAME", "SCOPES", "CREATED", "REVOKED"],
            [mes_id, "mes-line-1", "predict,work-orders", created[mes_id], "no"],
            [ops_id, "ops", "admin", created[ops_id], "no"],
        ]
        for output in (table, listed.output):
            assert mes_key.split("_", 2)[2] not in output
            assert ops_key.split("_", 2)[2] not in output

        revoked = twin_keys("revoke", mes_id, "--db", db)
        assert revoked.exit_code == 0
        assert revoked.output == (f"revoked key {mes_id} (mes-line-1); a running service "
                                  "refuses it within 5 s (TWIN_KEY_CACHE_S)\n")
        assert twin_keys("revoke", mes_id, "--db", db).output == (
            f"key {mes_id} (mes-line-1) was already revoked\n")
        table = twin_keys("list", "--db", db).output
        assert [line.split()[-1] for line in table.splitlines()] == ["REVOKED", "yes", "no"]
        checker = KeyChecker(store.session, 0)
        with pytest.raises(Unauthorized) as refused:
            checker.check(mes_key)
        assert refused.value.detail == "unknown or revoked API key"
        assert checker.check(ops_key).name == "ops"
    finally:
        store.close()


def test_revoking_an_unknown_id_or_a_whole_key_is_exit_code_1(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    unknown = twin_keys("revoke", "0123abcd", "--db", db)
    assert unknown.exit_code == 1
    assert unknown.output == (f"Error: no API key with id '0123abcd' in {db}: twin keys list "
                              "shows the ids\n")
    pasted = twin_keys("revoke", "twk_0123abcd_s3cr3t-value", "--db", db)
    assert pasted.exit_code == 1
    assert pasted.output == ("Error: pass the key's id (twin keys list shows it), not the "
                             "key\n")
