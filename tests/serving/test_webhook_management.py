"""Webhook management over a real uvicorn server on SQLite and PostgreSQL: create, list
with a cursor, get, merge-patch, delete, rotate the secret, list and replay dead letters,
each with its audit record and its exact problems; and the dispatcher of a running
service beside a slow and a dead receiver (real HTTP servers on 127.0.0.1)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from serving.store._outbox import emit as outbox_emit
from tests.serving._server import serving
from tests.serving.test_api import make_key
from tests.serving.test_webhooks import Receiver, free_port

PROBLEMS = "https://asset-twin.dev/problems/"
DECISION = "io.assettwin.decision.issued"
DEAD_LETTERED = "io.assettwin.webhook.dead_lettered"


@pytest.fixture
def admin(store_url: str) -> Iterator[httpx.Client]:
    """An admin client of a service with no dispatcher (the routes alone)."""
    from serving._settings import Settings

    key = make_key(store_url, "admin")
    with serving(Settings(database_url=store_url, webhooks=False)) as url, httpx.Client(
            base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
        yield client


def created(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/webhooks", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def audit_of(client: httpx.Client, hook_id: str) -> list[dict[str, Any]]:
    r = client.get("/v1/audit", params={"subject": f"webhook/{hook_id}"})
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()["records"]
    return records


def test_create_list_get_patch_delete_each_audited(admin: httpx.Client) -> None:
    hooks = [created(admin, url=f"http://127.0.0.1:9/h{i}", description=f"line {i}")
             for i in range(3)]
    first = hooks[0]
    assert first["secret"].startswith("whsec_")
    assert {k: v for k, v in first.items() if k not in ("id", "secret", "created_at",
                                                       "updated_at")} == {
        "url": "http://127.0.0.1:9/h0", "event_types": [], "description": "line 0",
        "active": True, "disabled_reason": None, "max_backlog": 1000, "pending": 0,
        "dead_letters": 0, "previous_secret_expires_at": None}

    ids = sorted(h["id"] for h in hooks)
    page1 = admin.get("/v1/webhooks", params={"limit": 2}).json()
    assert [h["id"] for h in page1["webhooks"]] == ids[:2]
    page2 = admin.get("/v1/webhooks", params={"limit": 2, "cursor": page1["next_cursor"]})
    assert [h["id"] for h in page2.json()["webhooks"]] == ids[2:]
    assert page2.json()["next_cursor"] is None
    assert all("secret" not in h for h in page1["webhooks"])

    path = f"/v1/webhooks/{first['id']}"
    got = admin.get(path).json()
    assert got == {k: v for k, v in first.items() if k != "secret"}

    r = admin.patch(path, content=b'{"active": false, "event_types": ["%s"]}' % DECISION.encode(),
                    headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    patched = r.json()
    assert (patched["active"], patched["disabled_reason"], patched["event_types"],
            patched["description"], patched["url"]) == (
        False, "disabled by test-admin", [DECISION], "line 0", "http://127.0.0.1:9/h0")
    r = admin.patch(path, json={"active": True, "event_types": None, "description": None,
                                "max_backlog": 50, "url": "https://mes.example.com/events"})
    assert r.status_code == 200, r.text
    again = r.json()
    assert (again["active"], again["disabled_reason"], again["event_types"],
            again["description"], again["max_backlog"], again["url"]) == (
        True, None, [], "", 50, "https://mes.example.com/events")

    assert admin.delete(path).status_code == 204
    assert admin.get(path).status_code == 404
    assert [h["id"] for h in admin.get("/v1/webhooks").json()["webhooks"]] == [
        h["id"] for h in sorted(hooks[1:], key=lambda h: h["id"])]
    assert [r["inputs"]["method"] for r in audit_of(admin, first["id"])] == [
        "POST", "PATCH", "PATCH", "DELETE"]


def test_unknown_ids_and_bad_bodies_are_exact_problems(admin: httpx.Client) -> None:
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""),
                           ("POST", ":rotate-secret"), ("GET", "/dead-letters"),
                           ("POST", "/dead-letters:replay")):
        r = admin.request(method, f"/v1/webhooks/nope{suffix}",
                          **({"json": {}} if method in ("PATCH", "POST") else {}))
        assert r.status_code == 404, (method, suffix, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {
            "type": PROBLEMS + "not-found", "title": "Not found", "status": 404,
            "detail": "no webhook 'nope'", "instance": f"/v1/webhooks/nope{suffix}",
            "errors": [{"field": "webhook_id", "value": "nope",
                        "expected": "the id of a webhook (GET /v1/webhooks lists them)"}]}

    hook = created(admin, url="http://127.0.0.1:9/h")
    path = f"/v1/webhooks/{hook['id']}"
    cases: list[tuple[str, str, Any, list[dict[str, Any]]]] = [
        ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/h", "max_backlog": 0}, [{
            "field": "max_backlog", "value": 0,
            "expected": "Input should be greater than or equal to 1"}]),
        ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/h", "secret": "mine"}, [{
            "field": "secret", "value": "mine", "expected": "Extra inputs are not permitted"}]),
        ("PATCH", path, {"url": None}, [{
            "field": "url", "value": None,
            "expected": "Value error, url cannot be removed: send a value or leave the key out"}]),
        ("POST", f"{path}:rotate-secret", {"grace_s": 604_801}, [{
            "field": "grace_s", "value": 604_801,
            "expected": "Input should be less than or equal to 604800"}]),
    ]
    for method, where, body, errors in cases:
        r = admin.request(method, where, json=body)
        assert r.status_code == 422, r.text
        assert r.json() == {"type": PROBLEMS + "invalid-request",
                            "title": "The request is not valid", "status": 422,
                            "detail": f"{len(errors)} field(s) are not valid",
                            "instance": where, "errors": errors}
    r = admin.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h",
                                         "event_types": [DECISION, "decision.issued"]})
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert (r.json()["detail"], error["field"], error["value"]) == (
        "unknown event type 'decision.issued'", "event_types[1]", "decision.issued")
    assert error["expected"].startswith("one of io.assettwin.advisory.cleared, ")
    r = admin.post(f"{path}/dead-letters:replay", json={"event_seqs": [7]})
    assert (r.status_code, r.json()["detail"], r.json()["errors"]) == (
        422, "event 7 is not a dead letter of this webhook", [{
            "field": "event_seqs[0]", "value": 7,
            "expected": "the event_seq of one of its dead letters (GET .../dead-letters)"}])
    r = admin.patch(path, content=b"{}", headers={"content-type": "text/plain"})
    assert (r.status_code, r.json()["errors"]) == (415, [{
        "field": "Content-Type", "value": "text/plain",
        "expected": "application/merge-patch+json or application/json"}])


@pytest.mark.parametrize(("url", "expected"), [
    ("http://", "got no host"),
    ("http:///events", "got no host"),
    ("http://exa_mple.com/events", "host 'exa_mple.com' is not a valid host name"),
    ("http://300.1.2.3/events", "host '300.1.2.3' is neither an IPv4 address nor a host name"),
    ("http://mes:secret@127.0.0.1/events", "got credentials in the URL"),
    ("ftp://127.0.0.1/events", "got scheme 'ftp'"),
    ("http://127.0.0.1:70000/events", "port '70000' is not a number from 1 to 65535"),
])
def test_a_url_without_a_valid_host_is_refused_naming_url(
    admin: httpx.Client, url: str, expected: str
) -> None:
    r = admin.post("/v1/webhooks", json={"url": url})
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert (error["field"], error["value"]) == ("url", url)
    assert error["expected"].startswith("Value error, ") and expected in error["expected"]
    hook = created(admin, url="http://127.0.0.1:9/h")
    r = admin.patch(f"/v1/webhooks/{hook['id']}", json={"url": url})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "url")
    assert admin.get(f"/v1/webhooks/{hook['id']}").json()["url"] == "http://127.0.0.1:9/h"


def test_rotation_answers_the_new_secret_once_and_keeps_the_old_one_for_the_grace(
    admin: httpx.Client, store_url: str
) -> None:
    from standardwebhooks import Webhook as Verifier
    from standardwebhooks.webhooks import WebhookVerificationError

    from serving.adapters.webhooks import Dispatcher
    from serving.store._db import open_store

    receiver = Receiver().start()
    store = open_store(store_url)
    try:
        hook = created(admin, url=receiver.url())
        path = f"/v1/webhooks/{hook['id']}"
        r = admin.post(f"{path}:rotate-secret", json={"grace_s": 2})
        assert r.status_code == 200, r.text
        rotated = r.json()
        assert rotated["id"] == hook["id"] and rotated["secret"] != hook["secret"]
        assert admin.get(path).json()["previous_secret_expires_at"] == (
            rotated["previous_secret_expires_at"])
        with store.session() as s:
            outbox_emit(s, type=DECISION, subject="asset/M-01", data={"n": 1})
        with Dispatcher(store.session) as dispatcher:
            assert dispatcher.deliver_due().delivered == 1
            time.sleep(2.1)  # past the grace period
            with store.session() as s:
                outbox_emit(s, type=DECISION, subject="asset/M-01", data={"n": 2})
            assert dispatcher.deliver_due().delivered == 1
        during, after = receiver.delivered()
        for secret in (hook["secret"], rotated["secret"]):
            assert Verifier(secret).verify(during.body, during.headers)["data"] == {"n": 1}
        assert Verifier(rotated["secret"]).verify(after.body, after.headers)["data"] == {"n": 2}
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            Verifier(hook["secret"]).verify(after.body, after.headers)
        assert admin.get(path).json()["previous_secret_expires_at"] is None

        r = admin.post(f"{path}:rotate-secret")  # no body: the default grace of one day
        assert r.status_code == 200 and r.json()["previous_secret_expires_at"] is not None
        records = audit_of(admin, hook["id"])
        assert [(x["inputs"]["method"], x["inputs"].get("grace_s")) for x in records] == [
            ("POST", None), ("ROTATE-SECRET", 2), ("ROTATE-SECRET", 86400)]
        text = r.text + str(records)
        assert all(s not in str(records) for s in (hook["secret"], rotated["secret"],
                                                   r.json()["secret"])), text
    finally:
        store.close()
        receiver.stop()


def test_a_slow_and_a_dead_receiver_delay_only_themselves(store_url: str) -> None:
    from serving._settings import Settings
    from serving.store._db import open_store

    healthy, slow, fixed = Receiver().start(), Receiver(delay_s=2.0).start(), Receiver().start()
    store = open_store(store_url)
    key = make_key(store_url, "admin")
    settings = Settings(database_url=store_url, webhook_backoff_s=[30.0], webhook_timeout_s=3,
                        webhook_poll_s=0.1)
    try:
        with serving(settings) as url, httpx.Client(
                base_url=url, headers={"X-API-Key": key}, timeout=30) as admin:
            ok = created(admin, url=healthy.url())
            late = created(admin, url=slow.url())
            dead = created(admin, url=f"http://127.0.0.1:{free_port()}/hook", max_backlog=4)
            start = time.monotonic()
            with store.session() as s:  # five events in one transaction
                seqs = [outbox_emit(s, type=DECISION, subject="asset/M-01", data={"n": n}).seq
                        for n in range(5)]
            while len(healthy.delivered()) < 5 and time.monotonic() - start < 5:
                time.sleep(0.01)
            delays = [round(r.at - start, 3) for r in healthy.delivered()[:5]]
            print(f"\nhealthy receiver beside a 2 s one ({store_url.split(':')[0]}): {delays} s")
            assert len(delays) == 5 and max(delays) < 2.0, delays
            assert len(slow.requests) == 1  # still on its first delivery

            # The dead one's queue stops at its bound: 5 > 4, trimmed to 3.
            while admin.get(f"/v1/webhooks/{dead['id']}").json()["dead_letters"] == 0:
                assert time.monotonic() - start < 5
                time.sleep(0.05)
            got = admin.get(f"/v1/webhooks/{dead['id']}").json()
            assert (got["pending"], got["dead_letters"]) == (3, 2)
            letters = admin.get(f"/v1/webhooks/{dead['id']}/dead-letters",
                                params={"limit": 1}).json()
            assert [x["event_seq"] for x in letters["dead_letters"]] == seqs[:1]
            rest = admin.get(f"/v1/webhooks/{dead['id']}/dead-letters",
                             params={"cursor": letters["next_cursor"]}).json()
            assert [x["event_seq"] for x in rest["dead_letters"]] == seqs[1:2]
            assert rest["next_cursor"] is None
            for x in letters["dead_letters"] + rest["dead_letters"]:
                assert (x["type"], x["subject"], x["reason"]) == (
                    DECISION, "asset/M-01", "max_backlog")
                assert x["last_error"].startswith(
                    "max_backlog 4 exceeded (5 pending); last error: ")
            metrics = admin.get("/metrics").text
            assert f'twin_webhook_queue{{status="pending",webhook="{dead["id"]}"}} 3.0' in metrics
            assert f'twin_webhook_queue{{status="dead",webhook="{dead["id"]}"}} 2.0' in metrics
            # A replay fills the room below the bound, oldest first, and no more.
            r = admin.post(f"/v1/webhooks/{dead['id']}/dead-letters:replay")
            assert r.status_code == 200, r.text
            assert r.json() == {"replayed": seqs[:1], "pending": 4, "dead_letters": 1}
            r = admin.post(f"/v1/webhooks/{dead['id']}/dead-letters:replay", json={})
            assert r.status_code == 409, r.text
            assert r.json()["errors"] == [{"field": "max_backlog", "value": 4, "expected": (
                "above 4 (PATCH the webhook), or replay once the pending deliveries are sent")}]

            # The integrator fixes the URL: the queue is sent at once, then the replay.
            r = admin.patch(f"/v1/webhooks/{dead['id']}", json={"url": fixed.url()})
            assert r.status_code == 200, r.text
            while admin.get(f"/v1/webhooks/{dead['id']}").json()["pending"]:
                assert time.monotonic() - start < 10
                time.sleep(0.02)
            assert len(fixed.delivered()) == 4
            r = admin.post(f"/v1/webhooks/{dead['id']}/dead-letters:replay",
                           json={"event_seqs": seqs[1:2]})
            assert r.status_code == 200, r.text
            assert r.json() == {"replayed": seqs[1:2], "pending": 1, "dead_letters": 0}
            while len(fixed.delivered()) < 5 and time.monotonic() - start < 10:
                time.sleep(0.02)
            order = [json.loads(x.body)["twinseq"] for x in fixed.delivered()]
            assert order == [seqs[0], *seqs[2:], seqs[1]]
            assert admin.get(f"/v1/webhooks/{dead['id']}").json()["dead_letters"] == 0

            events = admin.get("/v1/webhooks/" + ok["id"]).json()
            assert events["dead_letters"] == 0
            # The healthy one heard of the dead letters; the dead one did not.
            told = [x for x in healthy.delivered() if DEAD_LETTERED.encode() in x.body]
            assert len(told) == 1 and dead["id"].encode() in told[0].body
            assert all(DEAD_LETTERED.encode() not in x.body for x in fixed.delivered())
            assert late["id"]
    finally:
        store.close()
        for r in (healthy, slow, fixed):
            r.stop()
