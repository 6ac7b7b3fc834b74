"""Webhook signing against the Standard Webhooks definition, and delivery through a real
HTTP receiver on 127.0.0.1: retries, order, failure, subscriptions, leases, and several
workers on PostgreSQL. Time is advanced through ``now`` instead of sleeping."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from serving.adapters.webhooks import (
    CONTENT_TYPE,
    DeliveryStats,
    Dispatcher,
    SignatureError,
    backlog,
    new_secret,
    queue_counts,
    retry_after_s,
    run_dispatcher,
    sign,
    verify,
)
from serving.store._tables import Delivery, Event, Webhook
from tests.serving._db import Db, emit

# --- signing ---------------------------------------------------------------------------

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
TS = 1_700_000_000
BODY = b'{"specversion":"1.0","type":"decision.issued","data":{"x":1.5}}'


def expected_signature(key: bytes, msg_id: str, ts: int, body: bytes) -> str:
    """The spec's definition, written out independently of the module under test."""
    content = msg_id.encode() + b"." + str(ts).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def headers_for(signature: str, ts: int = TS, msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_sign_matches_the_definition_and_the_spec_example() -> None:
    assert sign(SECRET, MSG_ID, TS, BODY) == expected_signature(KEY, MSG_ID, TS, BODY)
    # The worked example published with the Standard Webhooks specification.
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_new_secret_is_whsec_and_32_random_bytes() -> None:
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32


def test_verify_accepts_a_good_signature_with_any_header_case() -> None:
    good = expected_signature(KEY, MSG_ID, TS, BODY)
    verify(SECRET, headers_for(good), BODY, now=TS + 10)
    upper = {k.upper(): v for k, v in headers_for(good).items()}
    verify(SECRET, upper, BODY, now=TS - 10)


def test_verify_accepts_when_one_of_several_signatures_matches() -> None:
    good = expected_signature(KEY, MSG_ID, TS, BODY)
    other = expected_signature(b"another key", MSG_ID, TS, BODY)
    verify(SECRET, headers_for(f"{other} v2,abc {good}"), BODY, now=TS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"body": BODY + b" "}, "no matching signature"),
        ({"ts": TS + 1}, "no matching signature"),
        ({"secret": new_secret()}, "no matching signature"),
        ({"now": TS + 600}, "timestamp too old: 600 s before now, tolerance 300 s"),
        ({"now": TS - 600}, "timestamp too new: 600 s after now, tolerance 300 s"),
    ],
)
def test_verify_rejects(change: dict[str, Any], message: str) -> None:
    good = expected_signature(KEY, MSG_ID, TS, BODY)
    ts = change.get("ts", TS)
    with pytest.raises(SignatureError) as caught:
        verify(
            change.get("secret", SECRET),
            headers_for(good, ts=ts),
            change.get("body", BODY),
            now=change.get("now", ts),
        )
    assert caught.value.reason == message
    assert str(caught.value) == message


def test_verify_names_a_missing_or_bad_header() -> None:
    good = headers_for(expected_signature(KEY, MSG_ID, TS, BODY))
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in good.items() if k != name}
        with pytest.raises(SignatureError, match=f"^missing header {name}$"):
            verify(SECRET, partial, BODY, now=TS)
    with pytest.raises(SignatureError, match=r"^invalid webhook-timestamp 'soon': expected unix"):
        verify(SECRET, {**good, "webhook-timestamp": "soon"}, BODY, now=TS)


def test_sign_refuses_a_secret_that_is_not_base64() -> None:
    with pytest.raises(ValueError, match="invalid base64"):
        sign("whsec_not*base64", MSG_ID, TS, BODY)


def add_webhook(db: Db, url: str, event_types: list[str] | None = None) -> tuple[str, str]:
    hook_id, secret = f"wh_{uuid.uuid4().hex[:10]}", new_secret()
    with db.session() as s:
        s.add(Webhook(id=hook_id, url=url, secret=secret, event_types=event_types or []))
    return hook_id, secret


def deliveries(db: Db, hook_id: str) -> list[Any]:
    """The webhook's deliveries in event order, as plain rows (no ORM objects)."""
    query = (
        select(
            Delivery.event_seq,
            Delivery.status,
            Delivery.attempts,
            Delivery.next_attempt_at,
            Delivery.last_error,
            Delivery.delivered_at,
        )
        .where(Delivery.webhook_id == hook_id)
        .order_by(Delivery.event_seq)
    )
    with db.session() as s:
        return list(s.execute(query).all())


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- a real HTTP receiver --------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass
class Receiver:
    """Records every POST; answers 503 to the first ``fail_first``, then ``status``, with
    ``headers``, after ``delay_s``."""

    port: int = 0
    fail_first: int = 0
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    failing = len(receiver.requests) < receiver.fail_first
                    status = 503 if failing else receiver.status
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append(
                        Received(self.path, headers, body, status, time.monotonic()))
                time.sleep(receiver.delay_s)
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left: expected in one test

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.status < 300 and (path is None or r.path == path)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def check_request(got: Received, envelope: dict[str, Any], secret: str) -> None:
    assert got.headers["content-type"] == CONTENT_TYPE
    assert got.headers["webhook-id"] == envelope["id"]
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 30
    verify(secret, got.headers, got.body)
    assert json.loads(got.body) == envelope


# --- delivery --------------------------------------------------------------------------


def test_retries_until_the_receiver_is_up_then_delivers_in_order(db: Db) -> None:
    port = free_port()  # nothing listens here yet
    hook_id, secret = add_webhook(db, f"http://127.0.0.1:{port}/mes/events")
    sent = [
        emit(db, "decision.issued", "asset/M-01", {"n": 1}),
        emit(db, "advisory.raised", "asset/M-01", {"n": 2}),
        emit(db, "decision.issued", "asset/M-02", {"n": 3}),
    ]
    with db.session() as s:
        assert backlog(s) == 3
    dispatcher = Dispatcher(db.session, timeout_s=2.0, backoff=(1, 2, 5))
    now = datetime.now(UTC)

    # Receiver down: only the first event is tried (the others wait behind it).
    assert dispatcher.deliver_due(now) == DeliveryStats(retrying=1)
    first, second, third = deliveries(db, hook_id)
    assert first.attempts == 1 and first.status == "pending"
    assert first.last_error is not None and first.last_error.startswith("connection refused: ")
    assert timedelta(seconds=1) <= aware(first.next_attempt_at) - now <= timedelta(seconds=1.1)
    assert (second.attempts, third.attempts) == (0, 0)
    assert dispatcher.deliver_due(now) == DeliveryStats()  # nothing due before the backoff

    receiver = Receiver(port=port, fail_first=2).start()
    try:
        for attempts, delay in ((2, 2), (3, 5)):  # up, but answering 503
            now = aware(deliveries(db, hook_id)[0].next_attempt_at)
            assert dispatcher.deliver_due(now) == DeliveryStats(retrying=1)
            first = deliveries(db, hook_id)[0]
            assert (first.attempts, first.last_error) == (attempts, "HTTP 503")
            lag = aware(first.next_attempt_at) - now
            assert timedelta(seconds=delay) <= lag <= timedelta(seconds=delay * 1.1)

        now = aware(first.next_attempt_at)
        assert dispatcher.deliver_due(now) == DeliveryStats(delivered=3)
    finally:
        receiver.stop()
        dispatcher.close()

    assert len(receiver.requests) == 5  # three tries of the first event, then one each
    got = receiver.delivered()
    assert [r.headers["webhook-id"] for r in got] == [e["id"] for e in sent]
    for request, envelope in zip(got, sent, strict=True):
        assert request.path == "/mes/events"
        check_request(request, envelope, secret)
    rows = deliveries(db, hook_id)
    assert [(d.status, d.attempts) for d in rows] == [("delivered", 4), *[("delivered", 1)] * 2]
    assert all(d.delivered_at is not None for d in rows)
    with db.session() as s:
        assert backlog(s) == 0


def test_gives_up_after_max_attempts_and_moves_on(db: Db, receiver: Receiver) -> None:
    receiver.status = 500
    hook_id, _ = add_webhook(db, receiver.url())
    emit(db, "decision.issued", "asset/M-01", {"n": 1})
    emit(db, "decision.issued", "asset/M-01", {"n": 2})
    with Dispatcher(db.session, max_attempts=3, backoff=(1, 2)) as dispatcher:
        now = datetime.now(UTC)
        assert dispatcher.deliver_due(now) == DeliveryStats(retrying=1)
        now = aware(deliveries(db, hook_id)[0].next_attempt_at)
        assert dispatcher.deliver_due(now) == DeliveryStats(retrying=1)
        now = aware(deliveries(db, hook_id)[0].next_attempt_at)
        # Third failure of event 1 is final; event 2 is then eligible and tried at once.
        assert dispatcher.deliver_due(now) == DeliveryStats(retrying=1, dead=1)
    first, second = deliveries(db, hook_id)
    assert (first.status, first.attempts, first.last_error) == ("dead", 3, "HTTP 500")
    assert first.delivered_at is None
    assert (second.status, second.attempts) == ("pending", 1)
    assert len(receiver.requests) == 4


def test_a_slow_receiver_is_a_timeout(db: Db, receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    hook_id, _ = add_webhook(db, receiver.url())
    emit(db, "decision.issued", "asset/M-01", {})
    with Dispatcher(db.session, timeout_s=0.2) as dispatcher:
        assert dispatcher.deliver_due() == DeliveryStats(retrying=1)
    (row,) = deliveries(db, hook_id)
    assert row.last_error is not None and row.last_error.startswith("timeout: ")


def test_a_webhook_gets_only_the_types_it_subscribed_to(db: Db, receiver: Receiver) -> None:
    _, all_secret = add_webhook(db, receiver.url("/all"))
    _, some_secret = add_webhook(db, receiver.url("/advisories"), ["advisory.raised"])
    sent = [
        emit(db, "decision.issued", "asset/M-01", {"n": 1}),
        emit(db, "advisory.raised", "asset/M-01", {"n": 2}),
        emit(db, "model.activated", "model/press", {"n": 3}),
    ]
    with Dispatcher(db.session) as dispatcher:
        assert dispatcher.deliver_due() == DeliveryStats(delivered=4)
    got_all, got_some = receiver.delivered("/all"), receiver.delivered("/advisories")
    assert [r.headers["webhook-id"] for r in got_all] == [e["id"] for e in sent]
    assert [r.headers["webhook-id"] for r in got_some] == [sent[1]["id"]]
    check_request(got_some[0], sent[1], some_secret)
    check_request(got_all[1], sent[1], all_secret)
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(all_secret, got_some[0].headers, got_some[0].body)


class WorkerCrashed(BaseException):
    """Stands for the process dying mid-send (not an error deliver_due handles)."""


def test_a_send_interrupted_by_a_crash_is_retried_after_the_lease(
    db: Db, receiver: Receiver
) -> None:
    hook_id, secret = add_webhook(db, receiver.url())
    envelope = emit(db, "decision.issued", "asset/M-01", {})

    def crash(request: httpx.Request) -> httpx.Response:
        raise WorkerCrashed

    crashing = Dispatcher(db.session, client=httpx.Client(transport=httpx.MockTransport(crash)))
    now = datetime.now(UTC)
    with pytest.raises(WorkerCrashed):
        crashing.deliver_due(now)
    (row,) = deliveries(db, hook_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert aware(row.next_attempt_at) == now + timedelta(seconds=crashing.lease_s)

    with Dispatcher(db.session) as survivor:
        assert survivor.deliver_due(now + timedelta(seconds=1)) == DeliveryStats()  # leased
        after_lease = now + timedelta(seconds=crashing.lease_s)
        assert survivor.deliver_due(after_lease) == DeliveryStats(delivered=1)
    (row,) = deliveries(db, hook_id)
    assert (row.status, row.attempts) == ("delivered", 2)
    check_request(receiver.delivered()[0], envelope, secret)


def test_inactive_webhooks_wait(db: Db, receiver: Receiver) -> None:
    hook_id, _ = add_webhook(db, receiver.url())
    emit(db, "decision.issued", "asset/M-01", {})
    with db.session() as s:
        s.get_one(Webhook, hook_id).active = False
    with Dispatcher(db.session) as dispatcher:
        assert dispatcher.deliver_due() == DeliveryStats()
    assert receiver.requests == []


def test_several_dispatchers_never_send_one_delivery_twice(db: Db, receiver: Receiver) -> None:
    if db.dialect != "postgresql":
        pytest.skip("concurrent workers are a PostgreSQL deployment")
    hooks = [add_webhook(db, receiver.url(f"/hook/{i}"))[0] for i in range(4)]
    sent = [emit(db, "decision.issued", f"asset/M-{i % 3}", {"i": i}) for i in range(25)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with Dispatcher(db.session) as dispatcher:
                start.wait(timeout=10)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    with db.session() as s:
                        if backlog(s) == 0:
                            return
                    dispatcher.deliver_due(limit=5)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert errors == [] and not any(w.is_alive() for w in workers)

    assert len(receiver.requests) == len(hooks) * len(sent)  # nothing sent twice
    for i, _ in enumerate(hooks):
        got = [r.headers["webhook-id"] for r in receiver.delivered(f"/hook/{i}")]
        assert got == [e["id"] for e in sent]  # each webhook in event order
    for hook_id in hooks:
        assert {(d.status, d.attempts) for d in deliveries(db, hook_id)} == {("delivered", 1)}


def test_dispatcher_checks_its_arguments(db: Db) -> None:
    with pytest.raises(ValueError, match="max_attempts must be >= 1, got 0"):
        Dispatcher(db.session, max_attempts=0)
    with Dispatcher(db.session) as dispatcher, pytest.raises(ValueError, match="now must be"):
        dispatcher.deliver_due(datetime(2025, 1, 1))


def test_run_dispatcher_delivers_until_stopped(db: Db, receiver: Receiver) -> None:
    add_webhook(db, receiver.url())
    envelope = emit(db, "decision.issued", "asset/M-01", {})

    async def scenario(dispatcher: Dispatcher) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_dispatcher(dispatcher, stop, interval_s=0.05))
        for _ in range(100):  # at most 5 s
            if receiver.delivered():
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    with Dispatcher(db.session) as dispatcher:
        asyncio.run(scenario(dispatcher))
    assert [r.headers["webhook-id"] for r in receiver.delivered()] == [envelope["id"]]


# --- bounded queues: Retry-After, dead letters, auto-disable -------------------------------


def events_of(db: Db, type_: str) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.scalars(select(Event.envelope).where(Event.type == type_).order_by(Event.seq))
        return list(rows)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected_s"),
    [
        (429, "7", 7.0),  # delay-seconds, taken instead of the 1 s backoff
        (503, "86400", 300.0),  # capped at retry_after_max_s
        (429, "soon", 1.0),  # unreadable: the backoff
        (500, "7", 1.0),  # only 429 and 503 carry a Retry-After worth honouring
    ],
)
def test_retry_after_is_honoured_on_429_and_503_and_capped(
    db: Db, receiver: Receiver, status: int, retry_after: str, expected_s: float
) -> None:
    receiver.status = status
    receiver.headers = {"Retry-After": retry_after}
    hook_id, _ = add_webhook(db, receiver.url())
    emit(db, "io.assettwin.decision.issued", "asset/M-01", {})
    now = datetime.now(UTC)
    with Dispatcher(db.session, backoff=(1,), jitter=0, retry_after_max_s=300) as dispatcher:
        assert dispatcher.deliver_due(now) == DeliveryStats(retrying=1)
    (row,) = deliveries(db, hook_id)
    assert row.last_error == f"HTTP {status}"
    assert aware(row.next_attempt_at) - now == timedelta(seconds=expected_s)


def test_retry_after_reads_an_http_date() -> None:
    from email.utils import formatdate

    now = 1_700_000_000.0
    assert retry_after_s(formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert retry_after_s(formatdate(now - 90, usegmt=True), now=now) == 0.0  # in the past
    assert retry_after_s("120", now=now) == 120.0
    assert retry_after_s("-3", now=now) is None and retry_after_s(None) is None


def declared(*events: dict[str, Any]) -> None:
    """Each event's data is what the OpenAPI document declares for its type (a model
    that forbids unknown fields: nothing more, nothing missing)."""
    from serving._event_schemas import EVENT_DATA

    for e in events:
        model = EVENT_DATA[e["type"]]
        assert model.model_validate(e["data"]).model_dump(mode="json", by_alias=True) == (
            e["data"]), e["type"]


def test_a_url_no_request_can_reach_is_dead_lettered_at_once(db: Db) -> None:
    hook_id, _ = add_webhook(db, "http://")  # stored before URLs were checked
    emit(db, "io.assettwin.decision.issued", "asset/M-01", {})
    with Dispatcher(db.session, disable_after=0) as dispatcher:
        assert dispatcher.deliver_due() == DeliveryStats(dead=1)
        assert dispatcher.deliver_due() == DeliveryStats()  # not every round, for ever
    (row,) = deliveries(db, hook_id)
    assert (row.status, row.attempts) == ("dead", 1)
    assert row.last_error.startswith("permanent: invalid URL 'http://': ")
    (event,) = events_of(db, "io.assettwin.webhook.dead_lettered")
    assert event["subject"] == f"webhook/{hook_id}"
    assert event["data"] == {
        "webhook_id": hook_id, "reason": "permanent", "count": 1,
        "first_event_seq": row.event_seq, "last_event_seq": row.event_seq,
        "max_backlog": None, "last_error": row.last_error}
    declared(event)


def test_dead_letters_in_a_row_disable_the_webhook_and_say_so(db: Db) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}/hook"
    hook_id, _ = add_webhook(db, dead_url)
    other = Receiver().start()
    try:
        other_id, _ = add_webhook(db, other.url(), ["io.assettwin.webhook.dead_lettered",
                                                    "io.assettwin.webhook.disabled"])
        sent = [emit(db, "io.assettwin.decision.issued", "asset/M-01", {"n": n})
                for n in range(3)]
        with Dispatcher(db.session, max_attempts=1, disable_after=2) as dispatcher:
            assert dispatcher.deliver_due(limit=10) == DeliveryStats(dead=2)
            # The events about it were written after that round's "now": due in the next.
            later = datetime.now(UTC) + timedelta(seconds=1)
            assert dispatcher.deliver_due(later, limit=10) == DeliveryStats(delivered=3)
    finally:
        other.stop()
    with db.session() as s:
        hook = s.get_one(Webhook, hook_id)
        assert hook.active is False
        assert hook.disabled_reason is not None and hook.disabled_reason.startswith(
            "2 deliveries in a row dead-lettered; the last after 1 attempt(s): "
            "connection refused: ")
    rows = deliveries(db, hook_id)
    assert [(r.event_seq, r.status) for r in rows] == [
        (sent[0]["twinseq"], "dead"), (sent[1]["twinseq"], "dead"),
        (sent[2]["twinseq"], "pending")]  # waits while the webhook is off
    dead_events = events_of(db, "io.assettwin.webhook.dead_lettered")
    (disabled,) = events_of(db, "io.assettwin.webhook.disabled")
    assert [e["data"]["first_event_seq"] for e in dead_events] == [r.event_seq for r in rows[:2]]
    assert disabled["data"] == {"webhook_id": hook_id, "disabled_reason": hook.disabled_reason}
    declared(*dead_events, disabled)
    # The other subscriber heard of both, the failing webhook of neither.
    got = [r.headers["webhook-id"] for r in other.delivered()]
    assert got == [dead_events[0]["id"], dead_events[1]["id"], disabled["id"]]
    assert [r.event_seq for r in deliveries(db, other_id)] == [
        e["twinseq"] for e in (*dead_events, disabled)]
    from serving.store._tables import AuditRecord

    with db.session() as s:
        (record,) = s.scalars(select(AuditRecord).where(
            AuditRecord.subject == f"webhook/{hook_id}"))
        assert (record.caller, record.inputs) == ("webhook-dispatcher",
                                                  {"method": "AUTO-DISABLE"})


def test_a_full_queue_dead_letters_its_oldest_and_tells_the_others(
    db: Db, receiver: Receiver
) -> None:
    full_id, _ = add_webhook(db, f"http://127.0.0.1:{free_port()}/hook")
    with db.session() as s:
        s.get_one(Webhook, full_id).max_backlog = 20
    other_id, _ = add_webhook(db, receiver.url(), ["io.assettwin.webhook.dead_lettered"])
    sent = [emit(db, "io.assettwin.decision.issued", "asset/M-01", {"n": n}) for n in range(25)]
    with Dispatcher(db.session) as dispatcher:
        # 25 pending, above 20: dead-lettered down to 18 (the bound less a tenth).
        assert dispatcher.tick() == [full_id]
        # The event about it is due from its own time on; nothing more is trimmed.
        later = datetime.now(UTC) + timedelta(seconds=1)
        assert dispatcher.tick(later) == sorted([full_id, other_id])
    rows = deliveries(db, full_id)
    assert [r.status for r in rows] == ["dead"] * 7 + ["pending"] * 18
    assert {r.last_error for r in rows[:7]} == {
        "max_backlog 20 exceeded (25 pending); last error: none (never tried)"}
    (event,) = events_of(db, "io.assettwin.webhook.dead_lettered")
    assert event["data"] == {
        "webhook_id": full_id, "reason": "max_backlog", "count": 7,
        "first_event_seq": sent[0]["twinseq"], "last_event_seq": sent[6]["twinseq"],
        "max_backlog": 20, "last_error": None}
    declared(event)
    assert [r.event_seq for r in deliveries(db, other_id)] == [event["twinseq"]]
    with db.session() as s:
        assert backlog(s) == 19
        assert queue_counts(s) == {full_id: (18, 7), other_id: (1, 0)}


def test_during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one(
    db: Db, receiver: Receiver
) -> None:
    from standardwebhooks import Webhook as Verifier
    from standardwebhooks.webhooks import WebhookVerificationError

    hook_id, old = add_webhook(db, receiver.url())
    new = new_secret()
    emit(db, "io.assettwin.decision.issued", "asset/M-01", {"n": 1})
    emit(db, "io.assettwin.decision.issued", "asset/M-01", {"n": 2})
    start = datetime.now(UTC)
    with db.session() as s:
        hook = s.get_one(Webhook, hook_id)
        hook.secret, hook.previous_secret = new, old
        hook.previous_secret_expires_at = start + timedelta(hours=1)
    with Dispatcher(db.session) as dispatcher:
        assert dispatcher.deliver_due(start, limit=1) == DeliveryStats(delivered=1)
        after = start + timedelta(hours=1, seconds=1)
        assert dispatcher.deliver_due(after, limit=1) == DeliveryStats(delivered=1)
    during, later = receiver.delivered()
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Verifier(secret).verify(during.body, during.headers)["data"] == {"n": 1}
    assert Verifier(new).verify(later.body, later.headers)["data"] == {"n": 2}
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(WebhookVerificationError, match="No matching signature found"):
        Verifier(old).verify(later.body, later.headers)


def test_a_failure_at_a_url_changed_during_the_attempt_is_retried_at_once(db: Db) -> None:
    """The integrator fixes the URL while an attempt at the old one is in flight: that
    attempt's failure says nothing of the new URL, so the delivery is due again at once,
    not after the backoff (which had held a fixed webhook's queue for its 30 s)."""
    hook_id, _ = add_webhook(db, "http://127.0.0.1:9/old")
    sent: list[str] = []

    def fixed_meanwhile(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        with db.session() as s:
            s.get(Webhook, hook_id).url = "http://127.0.0.1:9/new"  # type: ignore[union-attr]
        return httpx.Response(500)

    emit(db, "decision.issued", "asset/M-01", {})
    now = datetime.now(UTC)
    with Dispatcher(db.session, backoff=(30,), jitter=0,
                    client=httpx.Client(transport=httpx.MockTransport(fixed_meanwhile))) as d:
        # The failure at the old URL is retried in the same round, at the new one; that
        # one's failure waits for the backoff.
        assert d.deliver_due(now) == DeliveryStats(retrying=2)
    assert sent == ["http://127.0.0.1:9/old", "http://127.0.0.1:9/new"]
    (row,) = deliveries(db, hook_id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 2, "HTTP 500")
    assert aware(row.next_attempt_at) == now + timedelta(seconds=30)
