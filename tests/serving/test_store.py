"""The store on SQLite and PostgreSQL: migrations, the audit chain and what breaks it,
the outbox, and the locks that keep concurrent workers from losing updates."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner

from serving._cli_audit import audit
from serving.store import (
    ASSET_UPDATED,
    DECISION_ISSUED,
    MODEL_ACTIVATED,
    Asset,
    AuditRecord,
    Base,
    Delivery,
    Event,
    Store,
    StoreError,
    SubjectCounter,
    Webhook,
    append_audit,
    audit_fields,
    canonical_json,
    emit,
    events_after,
    lock_asset,
    open_store,
    record_hash,
    upgrade,
    verify_chain,
)
from serving.store._db import downgrade

AUDIT = Base.metadata.tables["audit"]


def append(store: Store, n: int, **extra: Any) -> list[int]:
    """``n`` audit records, one transaction each; their seqs."""
    seqs = []
    for i in range(n):
        with store.session() as s:
            record = append_audit(
                s,
                kind="assessment",
                subject=f"work-order/JO-{i}",
                caller="mes",
                inputs={"i": i, "quantity": 10 + i},
                outputs={"decision": "RELEASE", "p": i / 7},
                **extra,
            )
            seqs.append(record.seq)
    return seqs


def verify(store: Store, batch: int = 1000) -> Any:
    with store.session(readonly=True) as s:
        return verify_chain(s, batch=batch)


def run_threads(n: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in ``n`` threads started together; re-raise the first error."""
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # handed to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0]


# --- opening and migrating -------------------------------------------------------------


def test_migrations_create_exactly_the_tables_of_the_metadata(store: Store) -> None:
    with store.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names()) - {"alembic_version"}
        # Columns, types, indexes, unique and foreign keys as well as table names.
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert tables == set(Base.metadata.tables)
    assert diff == []

    upgrade(store.engine)  # at head already: nothing to do, no error
    downgrade(store.engine)
    with store.engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
    upgrade(store.engine)
    with store.engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) - {"alembic_version"} == tables


def test_workers_that_start_together_migrate_once(store_url: str) -> None:
    stores: list[Store] = []
    run_threads(4, lambda _: stores.append(open_store(store_url)))
    try:
        with stores[0].engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        assert [tuple(v) for v in version] == [("0002",)]
    finally:
        for opened in stores:
            opened.close()


def test_sqlite_connections_use_wal_busy_timeout_foreign_keys_and_begin_immediate(
    tmp_path: Path,
) -> None:
    import sqlite3

    path = tmp_path / "twin.db"
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.dialect == "sqlite"
        with store.engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys")
            }
        assert pragma == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1}

        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        with store.session() as s:
            s.execute(sa.select(1))  # a read only, yet the write lock is already held
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released at commit
        other.execute("ROLLBACK")

        # A read-only session does not hold writers up: WAL gives it its own snapshot.
        with store.session(readonly=True) as reader:
            assert reader.scalar(sa.select(sa.func.count()).select_from(AUDIT)) == 0
            append(store, 1)
            assert reader.scalar(sa.select(sa.func.count()).select_from(AUDIT)) == 0
        assert verify(store).records == 1
        other.close()
    finally:
        store.close()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_postgresql_urls_get_the_psycopg_driver(store_url: str) -> None:
    plain = store_url.replace("postgresql+psycopg://", "postgresql://", 1)
    store = open_store(plain, migrate=False)
    try:
        assert store.engine.url.drivername == "postgresql+psycopg"
        assert store.dialect == "postgresql"
        store.ping()
        with pytest.raises(sa.exc.DBAPIError, match="read-only"), store.session(readonly=True) as s:
            s.execute(sa.text("CREATE TABLE nope (x int)"))
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "shown", "expected"),
    [
        (
            "postgresql+psycopg2://twin:s3cret@db:5432/twin",
            "postgresql+psycopg2://twin:***@db:5432/twin",
            "expected the psycopg 3 driver (postgresql+psycopg://), not 'psycopg2'",
        ),
        (
            "mysql://twin:s3cret@db/twin",
            "mysql://twin:***@db/twin",
            "expected sqlite:///path/to/twin.db, or postgresql://",
        ),
        ("twin.db", "twin.db", "expected sqlite:///path/to/twin.db"),
        ("sqlite://", "sqlite://", "expected a SQLite file such as sqlite:///twin.db"),
        (
            "sqlite:////no/such/folder/twin.db",
            "sqlite:////no/such/folder/twin.db",
            "expected a file in an existing folder (/no/such/folder)",
        ),
    ],
)
def test_a_bad_url_is_refused_naming_it_with_the_password_masked(
    url: str, shown: str, expected: str
) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(url)
    message = str(caught.value)
    assert message.startswith(f"database url: {expected}")
    assert message.endswith(f"got {shown!r}")
    assert "s3cret" not in message
    assert caught.value.field == "database url"


def test_ping_raises_when_the_server_is_gone() -> None:
    store = open_store("postgresql://postgres@127.0.0.1:1/test", migrate=False)
    try:
        with pytest.raises(sa.exc.OperationalError):
            store.ping()
    finally:
        store.close()


# --- the audit chain -------------------------------------------------------------------


def test_chain_verifies_after_appends_in_any_batch_size(store: Store) -> None:
    assert verify(store).ok and verify(store).records == 0
    assert append(store, 23) == list(range(1, 24))
    for batch in (1, 7, 23, 1000):
        report = verify(store, batch=batch)
        assert (report.ok, report.records, report.first_broken, report.reason) == (
            True,
            23,
            None,
            None,
        )
    with store.session() as s:
        head = s.get(SubjectCounter, "audit")
        last = s.get(AuditRecord, 23)
        first = s.get(AuditRecord, 1)
        assert head is not None and last is not None and first is not None
        assert (head.last_seq, head.last_hash) == (23, last.hash)
        assert first.prev_hash == ""


def test_a_rolled_back_append_gives_its_seq_back(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as s:
        append_audit(s, kind="asset", subject="asset/M-01", caller="mes", inputs={}, outputs={})
        raise RuntimeError("the change it records failed")
    assert append(store, 2) == [1, 2]
    assert verify(store).ok


def _tamper(store: Store, how: str) -> None:
    """Change the audit table behind the application's back."""
    seq = AUDIT.c.seq
    with store.engine.begin() as conn:
        if how == "update":
            conn.execute(
                sa.update(AUDIT).where(seq == 5).values(outputs={"decision": "HOLD_FOR_REVIEW"})
            )
        elif how == "nudge float":
            row = conn.execute(sa.select(AUDIT.c.outputs).where(seq == 5)).one()
            outputs = {**row.outputs, "p": row.outputs["p"] + 1e-15}
            conn.execute(sa.update(AUDIT).where(seq == 5).values(outputs=outputs))
        elif how == "delete":
            conn.execute(sa.delete(AUDIT).where(seq == 5))
        elif how == "delete three":
            conn.execute(sa.delete(AUDIT).where(seq.between(5, 7)))
        elif how == "swap":
            conn.execute(sa.update(AUDIT).where(seq == 5).values(seq=-5))
            conn.execute(sa.update(AUDIT).where(seq == 6).values(seq=5))
            conn.execute(sa.update(AUDIT).where(seq == -5).values(seq=6))
        elif how == "delete last":
            conn.execute(sa.delete(AUDIT).where(seq == 10))
        elif how == "rehash head":
            conn.execute(sa.update(SubjectCounter).values(last_hash="0" * 64))
        elif how == "drop head":
            conn.execute(sa.delete(Base.metadata.tables["counters"]))
        else:
            raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "first_broken", "records", "reason"),
    [
        ("update", 5, 4, "record 5: hash does not match its contents"),
        ("nudge float", 5, 4, "record 5: hash does not match its contents"),
        ("delete", 5, 4, "seq 5 missing (records jump from 4 to 6)"),
        ("delete three", 5, 4, "seqs 5-7 missing (records jump from 4 to 8)"),
        ("swap", 5, 4, "record 5: prev_hash does not match record 4"),
        ("delete last", 10, 9, "chain head in counters says 10, last record is 9"),
        ("rehash head", 10, 10, "chain head hash in counters does not match record 10"),
        ("drop head", 1, 0, "chain head missing from counters, last record is 10"),
    ],
)
def test_tampering_is_named_at_the_right_record(
    store: Store, how: str, first_broken: int, records: int, reason: str
) -> None:
    append(store, 10)
    assert verify(store).ok
    _tamper(store, how)
    report = verify(store, batch=3)
    assert (report.ok, report.first_broken, report.records, report.reason) == (
        False,
        first_broken,
        records,
        reason,
    )


AWKWARD = {
    "floats": [0.1, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 1.0, 2.5e16, 1 / 3],
    "ints": [0, -1, 2**53 + 1, 10**30],
    "nested": {"b": [[1, [2.0, {"z": None, "a": True}]], []], "a": {}},
    "text": 'Prüfung ✓ "quoted" \\ back\nline',
    "tuple": (1, 2),
}


def test_hash_is_the_same_after_a_round_trip_through_the_database(store: Store) -> None:
    at = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with store.session() as s:
        written = append_audit(
            s,
            kind="completion",
            subject="work-order/JO-1",
            caller="mes",
            inputs=AWKWARD,
            outputs={"measured": AWKWARD["floats"], "at": at},
            idempotency_key="k-1",
            model_version="3",
            bundle_hash="ab" * 32,
            policy_version="p-1",
            at=at,
        )
        text_written = canonical_json(audit_fields(written))
        hash_written = written.hash

    with store.session(readonly=True) as s:
        row = s.execute(sa.select(AUDIT)).one()
        assert canonical_json(audit_fields(row)) == text_written
        assert record_hash(row.prev_hash, audit_fields(row)) == row.hash == hash_written
        assert row.inputs["floats"] == AWKWARD["floats"]
        assert row.inputs["ints"][3] == 10**30
        assert row.inputs["tuple"] == [1, 2]
        assert row.outputs["at"] == "2026-03-28T23:30:15.123456+00:00"
        stored_at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
        assert stored_at == at
        if store.dialect == "postgresql":  # JSON keeps the text; JSONB would reorder keys
            kind = s.scalar(sa.text("SELECT pg_typeof(inputs)::text FROM audit"))
            assert kind == "json"
    assert verify(store).ok


def test_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    import hashlib

    fields = {"seq": 1, "b": [0.1, 1e-300], "a": "ü"}
    text = '{"a":"\\u00fc","b":[0.1,1e-300],"seq":1}'
    assert canonical_json(fields) == text
    assert record_hash("ab", fields) == hashlib.sha256(("ab" + text).encode()).hexdigest()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outputs": {"x": [1.0, float("nan")]}}, "outputs.x[1]: expected a finite number"),
        ({"inputs": {"q": {1: "a"}}}, "inputs.q.1: expected a string key"),
        ({"inputs": {"q": {1, 2}}}, "inputs.q: expected a JSON value"),
        ({"inputs": [1]}, "inputs: expected a JSON object (a dict), got [1]"),
        ({"kind": ""}, "kind: expected a non-empty string, got ''"),
        ({"caller": "c" * 129}, "caller: expected at most 128 characters (it has 129)"),
        ({"at": datetime(2026, 1, 1)}, "at: expected a timezone-aware datetime"),
    ],
)
def test_append_refuses_what_would_not_round_trip(
    store: Store, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {
        "kind": "asset",
        "subject": "asset/M-01",
        "caller": "mes",
        "inputs": {},
        "outputs": {},
    }
    with store.session() as s, pytest.raises(StoreError) as caught:
        append_audit(s, **{**args, **kwargs})
    assert str(caught.value).startswith(message)


def test_concurrent_appends_get_consecutive_seqs_and_a_valid_chain(store: Store) -> None:
    def work(worker: int) -> None:
        for i in range(25):
            with store.session() as s:
                append_audit(
                    s,
                    kind="assessment",
                    subject=f"work-order/W{worker}-{i}",
                    caller=f"worker-{worker}",
                    inputs={"worker": worker, "i": i},
                    outputs={"x": worker + i / 10},
                )

    run_threads(8, work)
    with store.session(readonly=True) as s:
        seqs = list(s.scalars(sa.select(AuditRecord.seq).order_by(AuditRecord.seq)))
        per_worker = s.execute(
            sa.select(AuditRecord.caller, sa.func.count()).group_by(AuditRecord.caller)
        ).all()
    assert seqs == list(range(1, 201))
    assert sorted(n for _, n in per_worker) == [25] * 8
    report = verify(store, batch=64)
    assert report.ok and report.records == 200


# --- the outbox ------------------------------------------------------------------------


def test_per_subject_sequences_are_gapless_under_concurrent_writers(store: Store) -> None:
    subjects = ("asset/M-01", "asset/M-02")

    def work(worker: int) -> None:
        for i in range(10):
            with store.session() as s:
                emit(s, type=ASSET_UPDATED, subject=subjects[(worker + i) % 2], data={"w": worker})

    run_threads(8, work)
    with store.session(readonly=True) as s:
        events = list(s.scalars(sa.select(Event).order_by(Event.seq)))
    assert len(events) == 80
    assert [e.envelope["twinseq"] for e in events] == [e.seq for e in events]
    assert len({e.id for e in events}) == 80
    for subject in subjects:
        mine = [e for e in events if e.subject == subject]
        assert [e.subject_seq for e in mine] == list(range(1, 41))
        assert [e.envelope["sequence"] for e in mine] == [f"{n:019d}" for n in range(1, 41)]
        # The sequence extension compares values as strings: they must sort as numbers.
        assert sorted(e.envelope["sequence"] for e in mine) == [
            e.envelope["sequence"] for e in mine
        ]


def test_emit_writes_a_cloudevent_and_deliveries_for_matching_active_webhooks(
    store: Store,
) -> None:
    with store.session() as s:
        for hook_id, types, active in [
            ("wh_all", [], True),
            ("wh_decisions", [DECISION_ISSUED, ASSET_UPDATED], True),
            ("wh_models", [MODEL_ACTIVATED], True),
            ("wh_off", [], False),
        ]:
            s.add(
                Webhook(
                    id=hook_id,
                    url=f"https://mes/{hook_id}",
                    secret="whsec_x",
                    event_types=types,
                    active=active,
                )
            )
    at = datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=-4)))
    with store.session() as s:
        event = emit(
            s,
            type=DECISION_ISSUED,
            subject="work-order/JO-7",
            data={"decision": "RELEASE"},
            source="/asset-twin/line-2",
            time=at,
        )
        seq, event_id = event.seq, event.id
    with store.session(readonly=True) as s:
        stored = s.get(Event, seq)
        assert stored is not None
        assert stored.envelope == {
            "specversion": "1.0",
            "id": event_id,
            "source": "/asset-twin/line-2",
            "type": DECISION_ISSUED,
            "subject": "work-order/JO-7",
            "time": "2026-05-01T16:00:00.250000Z",
            "datacontenttype": "application/json",
            "sequence": "0000000000000000001",
            "twinseq": seq,
            "data": {"decision": "RELEASE"},
        }
        assert len(event_id) == 32 and int(event_id, 16) >= 0
        deliveries = s.execute(
            sa.select(Delivery.webhook_id, Delivery.status, Delivery.attempts)
            .where(Delivery.event_seq == seq)
            .order_by(Delivery.webhook_id)
        ).all()
    assert [tuple(d) for d in deliveries] == [
        ("wh_all", "pending", 0),
        ("wh_decisions", "pending", 0),
    ]


def test_an_event_is_rolled_back_with_the_change_it_reports(store: Store) -> None:
    with store.session() as s:
        s.add(Webhook(id="wh_all", url="https://mes/all", secret="whsec_x", event_types=[]))
    with pytest.raises(RuntimeError), store.session() as s:
        emit(s, type=ASSET_UPDATED, subject="asset/M-01", data={})
        raise RuntimeError("the asset update failed")
    with store.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0
        assert emit(s, type=ASSET_UPDATED, subject="asset/M-01", data={}).subject_seq == 1


def test_emit_refuses_data_that_would_not_round_trip(store: Store) -> None:
    with store.session() as s:
        with pytest.raises(StoreError, match=r"^data\.x: expected a finite number"):
            emit(s, type=ASSET_UPDATED, subject="asset/M-01", data={"x": float("inf")})
        with pytest.raises(StoreError, match=r"^time: expected a timezone-aware datetime"):
            emit(s, type=ASSET_UPDATED, subject="asset/M-01", data={}, time=datetime(2026, 1, 1))
        with pytest.raises(
            StoreError, match=r"^subject: expected a non-empty string of at most 250"
        ):
            emit(s, type=ASSET_UPDATED, subject="", data={})


def test_events_after_pages_in_order_and_filters(store: Store) -> None:
    with store.session() as s:
        for i in range(25):
            emit(
                s,
                type=(DECISION_ISSUED, ASSET_UPDATED)[i % 2],
                subject=f"asset/M-0{i % 3}",
                data={"i": i},
            )
    pages, cursor = [], 0
    with store.session(readonly=True) as s:
        while page := events_after(s, cursor, limit=10):
            pages.append([e.envelope["data"]["i"] for e in page])
            cursor = page[-1].seq
        decisions = events_after(s, 0, limit=100, types=[DECISION_ISSUED])
        m1 = events_after(s, 0, subject="asset/M-01")
        both = events_after(s, 5, types=[ASSET_UPDATED], subject="asset/M-01", limit=2)
        with pytest.raises(StoreError, match=r"^limit: expected an integer >= 1, got 0$"):
            events_after(s, 0, limit=0)
        with pytest.raises(StoreError, match=r"^after_seq: expected an integer >= 0, got -1$"):
            events_after(s, -1)
    assert pages == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    assert [e.envelope["data"]["i"] for e in decisions] == list(range(0, 25, 2))
    assert [e.envelope["data"]["i"] for e in m1] == list(range(1, 25, 3))
    assert [e.envelope["data"]["i"] for e in both] == [7, 13]


# --- asset locks -----------------------------------------------------------------------


def _add_asset(store: Store) -> None:
    with store.session() as s:
        s.add(
            Asset(
                equipment_id="M-01",
                asset_type="spindle",
                state={"count": 0},
                state_measured_at=datetime.now(UTC),
            )
        )


def _increment(store: Store, read: Callable[[Any], Asset | None]) -> None:
    for _ in range(10):
        with store.session() as s:
            asset = read(s)
            assert asset is not None
            count = asset.state["count"]
            time.sleep(0.002)  # widen the window in which an unlocked read goes stale
            asset.state = {**asset.state, "count": count + 1}
            asset.revision += 1


def test_lock_asset_loses_no_update_under_concurrent_writers(store: Store) -> None:
    _add_asset(store)
    run_threads(8, lambda _: _increment(store, lambda s: lock_asset(s, "M-01")))
    with store.session() as s:
        asset = s.get(Asset, "M-01")
        assert asset is not None
        assert (asset.state["count"], asset.revision) == (80, 81)
        assert lock_asset(s, "M-99") is None


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_without_lock_asset_postgresql_loses_updates(store: Store) -> None:
    """The control of the test above: the harness does see lost updates (on SQLite,
    BEGIN IMMEDIATE serializes even unlocked reads, so there is nothing to see)."""
    _add_asset(store)
    run_threads(8, lambda _: _increment(store, lambda s: s.get(Asset, "M-01")))
    with store.session(readonly=True) as s:
        asset = s.get(Asset, "M-01")
        assert asset is not None and asset.state["count"] < 80


# --- twin audit verify -----------------------------------------------------------------


def test_cli_verify_reports_a_good_and_a_tampered_chain(store: Store, store_url: str) -> None:
    runner = CliRunner()
    append(store, 6)

    good = runner.invoke(audit, ["verify", "--db", store_url])
    assert (good.exit_code, good.stdout) == (0, "audit chain OK: 6 records\n")
    from_env = runner.invoke(audit, ["verify"], env={"TWIN_DATABASE_URL": store_url})
    assert (from_env.exit_code, from_env.stdout) == (0, "audit chain OK: 6 records\n")

    with store.engine.begin() as conn:
        conn.execute(sa.update(AUDIT).where(AUDIT.c.seq == 3).values(inputs={"i": 99}))
    bad = runner.invoke(audit, ["verify", "--db", store_url])
    assert (bad.exit_code, bad.stdout) == (
        1,
        "audit chain BROKEN at record 3: record 3: hash does not match its contents\n",
    )


def test_cli_verify_cannot_check_a_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = CliRunner().invoke(audit, ["verify", "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"audit chain NOT CHECKED: no database at {missing} (from --db sqlite:///{missing})\n"
    )
    assert not missing.exists()  # verifying never creates a database
