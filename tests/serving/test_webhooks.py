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
    run_dispatcher,
    sign,
    verify,
)
from serving.store._tables import Delivery, Webhook
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


@dataclass
class Receiver:
    """Records every POST; answers 503 to the first ``fail_first``, then ``status``."""

    port: int = 0
    fail_first: int = 0
    status: int = 200
    delay_s: float = 0.0
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
                    receiver.requests.append(Received(self.path, headers, body, status))
                time.sleep(receiver.delay_s)
                self.send_response(status)
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
    dispatcher = Dispatcher(db.session, timeout_s=2.0)
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
        assert dispatcher.deliver_due(now) == DeliveryStats(retrying=1, failed=1)
    first, second = deliveries(db, hook_id)
    assert (first.status, first.attempts, first.last_error) == ("failed", 3, "HTTP 500")
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
