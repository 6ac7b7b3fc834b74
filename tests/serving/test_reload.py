"""Reloading a model while serving (``POST /v1/models/{name}/reload``) over real uvicorn
servers: admin only; requests in flight all answered; the switch recorded as an
activation row, an audit record and a model.activated event; a second instance on the
same database follows through its poll, and one started later serves the activated
bundle at once; bundles that cannot take the model's place refused with a problem."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving._server import copy_bundle, serving
from tests.serving.test_api import ORDER, STATE, make_key

NAME = "milling_spindle"
RELOAD = f"/v1/models/{NAME}/reload"
ROW = {**ORDER, **STATE, "ambient_temperature": 22.0, "coolant_temperature": 20.0,
       "replace_worn_tool": True, "tool_measure_interval": 0, "quantity": 20}


@pytest.fixture(scope="module")
def bundles(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained bundle (a), a re-export of it with another hash (b), one of another
    model name, and one whose inputs (the request schema) differ."""
    root = tmp_path_factory.mktemp("bundles")
    a = Path(trained.bundle)
    sig = json.loads((a / "signature.json").read_text(encoding="utf-8"))
    inputs = [dict(c) for c in sig["inputs"]]
    speed = next(c for c in inputs if c["name"] == "spindle_speed")
    speed["unit"] = "1/s"
    return {
        "a": a,
        "b": copy_bundle(a, root / "b", rehash="re-exported"),
        "renamed": copy_bundle(a, root / "renamed", signature={"name": "other_spindle"}),
        "schema": copy_bundle(a, root / "schema", signature={"inputs": inputs}),
    }


def _hash(bundle: Path) -> str:
    return str(json.loads((bundle / "signature.json").read_text())["bundle_hash"])


def _settings(db: str, bundle: Path, **kw: Any) -> Any:
    from serving._settings import Settings

    return Settings(database_url=db, models=[str(bundle)], **kw)


def test_pinned_source_names_exactly_the_activated_version() -> None:
    from serving._models import pinned_source

    assert pinned_source("models:/milling_spindle@champion", "7") == "models:/milling_spindle/7"
    assert pinned_source("models:/milling_spindle/3", "3") == "models:/milling_spindle/3"
    assert pinned_source("/srv/bundles/a", "folder") == "/srv/bundles/a"


def test_reload_needs_the_admin_scope_and_the_same_bundle_is_recorded_unchanged(
    bundles: dict[str, Path], tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    with serving(_settings(db, bundles["a"])) as url:
        keys = {s: make_key(db, s) for s in ("predict", "work-orders", "admin")}
        with httpx.Client(base_url=url, timeout=30) as c:
            r = c.post(RELOAD, json={})
            assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
            for scope in ("predict", "work-orders"):
                r = c.post(RELOAD, headers={"X-API-Key": keys[scope]})
                assert r.status_code == 403
                assert r.json()["detail"].startswith("this route needs scope 'admin'")
            r = c.post(RELOAD, headers={"X-API-Key": keys["admin"]})  # no body at all
            assert r.status_code == 200, r.text
            out = r.json()
            a = _hash(bundles["a"])
            assert (out["name"], out["bundle_hash"], out["source"]) == (NAME, a,
                                                                         str(bundles["a"]))
            assert out["previous"] == {"version": "folder", "bundle_hash": a,
                                       "source": str(bundles["a"])}
            assert out["changed"] is False and out["activation_id"] == 1
            assert out["inputs"] and out["outputs"]  # the model's description
            events = c.get("/v1/events", headers={"X-API-Key": keys["admin"]}).json()["events"]
            (ev,) = [e for e in events if e["type"] == "io.assettwin.model.activated"]
            assert ev["data"]["changed"] is False and ev["subject"] == f"model/{NAME}"


def _fire(url: str, stop: threading.Event, got: list[tuple[int, str | None]]) -> None:
    with httpx.Client(base_url=url, timeout=60) as c:
        while not stop.is_set():
            r = c.post(f"/v1/models/{NAME}/predict", json={"rows": [ROW] * 5})
            got.append((r.status_code,
                        r.json()["model"]["bundle_hash"] if r.status_code == 200 else r.text))


def test_a_reload_answers_requests_in_flight_is_recorded_and_every_instance_follows(
    bundles: dict[str, Path], store_url: str,
) -> None:
    from sqlalchemy import create_engine, select

    from serving.store._tables import AuditRecord, ModelActivation

    a, b = _hash(bundles["a"]), _hash(bundles["b"])
    assert a != b
    dev = {"dev_mode": True, "model_poll_s": 0.2}
    with serving(_settings(store_url, bundles["a"], **dev)) as one, \
            serving(_settings(store_url, bundles["a"], **dev)) as two, \
            httpx.Client(base_url=one, timeout=60) as c1, \
            httpx.Client(base_url=two, timeout=60) as c2:
        stop = threading.Event()
        got: list[tuple[int, str | None]] = []
        threads = [threading.Thread(target=_fire, args=(one, stop, got)) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            while len(got) < 12:  # requests are running when the reload starts
                time.sleep(0.01)
            r = c1.post(RELOAD, json={"source": str(bundles["b"])})
            before_end = len(got)
            while len(got) < before_end + 12:  # and go on after it
                time.sleep(0.01)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert r.status_code == 200, r.text
        assert {status for status, _ in got} == {200}, [g for g in got if g[0] != 200][:3]
        assert {h for _, h in got} == {a, b}  # the old model, then the new one
        p = c1.post(f"/v1/models/{NAME}/predict", json={"rows": [ROW]}).json()
        assert p["model"]["bundle_hash"] == b
        out = r.json()
        assert (out["bundle_hash"], out["source"], out["changed"]) == (b, str(bundles["b"]),
                                                                         True)
        assert out["previous"]["bundle_hash"] == a

        # The other instance follows through its poll.
        deadline = time.monotonic() + 15
        while c2.get(f"/v1/models/{NAME}").json()["bundle_hash"] != b:
            assert time.monotonic() < deadline, "the second instance did not follow"
            time.sleep(0.1)
        p = c2.post(f"/v1/models/{NAME}/predict", json={"rows": [ROW]}).json()
        assert p["model"]["bundle_hash"] == b
        assert c2.get(f"/v1/models/{NAME}").json()["source"] == str(bundles["b"])

        events = c1.get("/v1/events", params={"limit": 1000}).json()["events"]
        (ev,) = [e for e in events if e["type"] == "io.assettwin.model.activated"]
        assert ev["subject"] == f"model/{NAME}" and ev["sequence"] == f"{1:019d}"
        assert ev["data"]["previous"] == {"version": "folder", "bundle_hash": a,
                                          "source": str(bundles["a"])}
        assert (ev["data"]["version"], ev["data"]["bundle_hash"]) == ("folder", b)
        assert ev["data"]["activation_id"] == out["activation_id"]

    # A third instance, started after the switch with the old bundle configured, serves
    # the activated one from its first request.
    with serving(_settings(store_url, bundles["a"], dev_mode=True)) as three, \
            httpx.Client(base_url=three, timeout=60) as c3:
        assert c3.get(f"/v1/models/{NAME}").json()["bundle_hash"] == b

    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            (row,) = conn.execute(select(ModelActivation)).all()
            assert (row.name, row.source, row.version, row.bundle_hash, row.caller) == (
                NAME, str(bundles["b"]), "folder", b, "dev-mode")
            (audit,) = conn.execute(
                select(AuditRecord).where(AuditRecord.kind == "model")).all()
            assert audit.subject == f"model/{NAME}" and audit.bundle_hash == b
            assert audit.inputs == {"name": NAME, "source": str(bundles["b"])}
            assert audit.outputs["previous"]["bundle_hash"] == a
            assert (audit.outputs["version"], audit.outputs["bundle_hash"]) == ("folder", b)
    finally:
        engine.dispose()


def test_a_bundle_that_cannot_take_the_models_place_is_refused_and_nothing_changes(
    bundles: dict[str, Path], tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'twin.db'}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with serving(_settings(db, bundles["a"], dev_mode=True)) as url, \
            httpx.Client(base_url=url, timeout=60) as c:
        r = c.post(RELOAD, json={"source": str(bundles["renamed"])})
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"] == [{
            "field": "source", "value": str(bundles["renamed"]),
            "expected": f"a bundle of model {NAME!r} (this one is 'other_spindle')"}]
        r = c.post(RELOAD, json={"source": str(bundles["schema"])})
        assert r.status_code == 409
        (err,) = r.json()["errors"]
        assert err["field"] == "source" and err["value"] == str(bundles["schema"])
        assert "the request schemas were derived from them at start-up" in err["expected"]
        r = c.post(RELOAD, json={"source": str(tmp_path / "nowhere")})
        assert r.status_code == 404
        assert r.json()["errors"][0]["field"] == "source"
        assert r.json()["detail"].endswith("no such bundle folder")
        r = c.post(RELOAD, json={"source": str(empty)})
        assert r.status_code == 422
        assert r.json()["detail"] == f"{empty}: not a model bundle (no signature.json)"
        r = c.post(RELOAD, json={"source": "bad\x00path"})
        assert r.status_code in (404, 422) and r.json()["errors"][0]["field"] == "source"
        r = c.post("/v1/models/nope/reload", json={})
        assert r.status_code == 404 and r.json()["errors"][0] == {
            "field": "name", "value": "nope", "expected": f"one of {NAME}"}
        r = c.post(RELOAD, json={"source": str(bundles["b"]), "force": True})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "force"

        assert c.get(f"/v1/models/{NAME}").json()["bundle_hash"] == _hash(bundles["a"])
        events = c.get("/v1/events").json()["events"]
        assert not [e for e in events if e["type"] == "io.assettwin.model.activated"]
