"""Single assessments answered in front of the framework, and run together when they
arrive together.

``POST /v1/work-orders/{job_order_id}/assessment`` is the call an MES makes for every
work order it dispatches. Through FastAPI a plain one spends about as long in routing,
dependency injection, body validation and the hop to the thread pool as the surrogate
spends on its rows, and concurrent ones each pay the store's two transactions and their
own two surrogate calls. ``FastAssess`` sits in front of the FastAPI application and
answers a plain request itself:

- the exact path with an id of unreserved characters (letters, digits, ``-._~``; an id
  with anything else, percent-encoded, goes to the route), no query string, a JSON
  content type, an API key with the ``work-orders`` scope (a bearer token goes to the
  route), an ``Idempotency-Key`` of at most 256 characters or none, and a body that the
  route's own model (``JobOrderIn``) accepts;
- requests that are waiting together (at most ``MAX_ORDERS``) are assessed as one batch
  in one worker thread: one read transaction, the orders of one model sharing its two
  calls (``serving.api.assessing.assess_prepared``, which the batch route uses too), and
  one write transaction that records each answer with its audit record and events as the
  route does. While a batch runs, the next one gathers; a process runs one at a time,
  so the batches grow with the load and the CPU goes to the work, not to contention.

Everything else goes on to the route with the body already read, and so does every
request of a batch that the lane cannot answer as the route would: an order the route
refuses (an unknown asset, a bad parameter: the route says why), a key already used (the
route replays it), a batch whose model call or write failed (each request then asks the
route alone). The answer is the route's: the same functions build it and the same
encoder writes it (``tests/serving/test_fast_assessment.py`` compares them).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from serving._auth import DEV_CALLER, Caller, looks_like_jwt, presented_token
from serving._errors import ServingError
from serving._fastpath import JSON_HEADERS, read_body, replay_body
from serving._schemas import JobOrderIn
from serving.api.assessing import Prepared, assess_prepared, prepare, record
from serving.api.deps import encode, now, remember
from serving.store._tables import IdempotencyRecord

__all__ = ["ASSESSMENT_ROUTE", "MAX_ORDERS", "FastAssess"]

log = logging.getLogger("serving.fastassess")

# The route's template (its metrics label) and the raw paths this lane answers.
ASSESSMENT_ROUTE = "/v1/work-orders/{job_order_id}/assessment"
_PATH = re.compile(rb"/v1/work-orders/([A-Za-z0-9._~-]{1,128})/assessment")
MAX_ORDERS = 32
# Loop turns a new batch waits for requests already on their way (as serving._fastpath).
DEFER_TURNS = 4
_KEY_MAX = 256


@dataclass
class _Order:
    job_order_id: str
    path: str
    body: JobOrderIn
    caller: Caller
    key: str | None


class FastAssess:
    """ASGI middleware: answers plain single assessments; passes the rest to ``app``.
    ``state`` is the application whose ``state.ctx`` the lifespan fills."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app, self.state = app, state
        self._runner: _Runner | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = getattr(self.state, "ctx", None)
        match = (_PATH.fullmatch(scope.get("raw_path") or b"")
                 if scope["type"] == "http" and scope["method"] == "POST" else None)
        if match is None or ctx is None or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        body, gone = await read_body(receive)
        order = None if gone else _order(ctx, scope, match.group(1).decode(), body)
        answer = None if order is None else await self._run(ctx).answer(order)
        if answer is None:  # the route decides, and says why
            await self.app(scope, replay_body(body, gone, receive), send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})
        ctx.metrics.observe("POST", ASSESSMENT_ROUTE, 200, time.perf_counter() - start)

    def _run(self, ctx: Any) -> _Runner:
        """The runner of this service context (a new context, a new runner)."""
        if self._runner is None or self._runner.ctx is not ctx:
            self._runner = _Runner(ctx)
        return self._runner


def _order(ctx: Any, scope: Scope, job_order_id: str, body: bytes) -> _Order | None:
    """The request as an order the lane may answer, or None for the route."""
    headers = dict(scope["headers"])
    media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    key = headers.get(b"idempotency-key")
    if media != b"application/json" or (key is not None and not 0 < len(key) <= _KEY_MAX):
        return None
    try:
        if ctx.settings.dev_mode:
            caller = DEV_CALLER
        else:
            token = presented_token(_text(headers.get(b"authorization")),
                                    _text(headers.get(b"x-api-key")))
            if looks_like_jwt(token):  # its key set may need fetching: the route's work
                return None
            caller = ctx.keys.check(token)
        caller.require("work-orders")
        order = JobOrderIn.model_validate_json(body)
    except (ServingError, ValidationError, ValueError):
        return None
    return _Order(job_order_id, scope["path"], order, caller, _text(key))


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


class _Runner:
    """The waiting orders of one service context, run as batches one at a time in a
    worker thread."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.waiting: list[tuple[_Order, asyncio.Future[bytes | None]]] = []
        self.busy = False
        self.task: asyncio.Future[list[bytes | None]] | None = None  # the batch running

    async def answer(self, order: _Order) -> bytes | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        self.waiting.append((order, future))
        if not self.busy:
            self.busy = True
            loop.call_soon(self._after, DEFER_TURNS)
        return await future

    def _after(self, turns: int) -> None:
        if turns > 0:
            asyncio.get_running_loop().call_soon(self._after, turns - 1)
        else:
            self._start()

    def _start(self) -> None:
        batch, self.waiting = self.waiting[:MAX_ORDERS], self.waiting[MAX_ORDERS:]
        self.task = asyncio.ensure_future(  # noqa: RUF006 (held in self.task)
            asyncio.to_thread(assess_batch, self.ctx, [o for o, _ in batch]))
        self.task.add_done_callback(lambda t: self._done(t, batch))

    def _done(self, task: asyncio.Future[list[bytes | None]],
              batch: list[tuple[_Order, asyncio.Future[bytes | None]]]) -> None:
        exc = task.exception()
        if exc is not None:
            log.error("a batch of %d assessments failed; each goes to the route",
                      len(batch), exc_info=exc)
        answers = [None] * len(batch) if exc is not None else task.result()
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # (a request whose client left is cancelled)
                future.set_result(answer)
        if self.waiting:
            self._start()
        else:
            self.busy = False


def _request(order: _Order) -> Any:
    """What ``remember`` reads of a request."""
    return SimpleNamespace(method="POST", url=SimpleNamespace(path=order.path))


def assess_batch(ctx: Any, orders: list[_Order]) -> list[bytes | None]:
    """The encoded answers of ``orders``, each recorded as the route records it; None
    where the route must answer (a refusal, a replay, a failed write)."""
    ctx.metrics.assessment_batch.observe(len(orders))
    ready = read_orders(ctx, orders)
    index = list(ready)
    responses = dict(zip(index, assess_prepared(ctx, [ready[i] for i in index]),
                         strict=True))
    return write_answers(ctx, orders, ready, responses)


def read_orders(ctx: Any, orders: list[_Order]) -> dict[int, Prepared]:
    """The orders the lane may assess, prepared in one read transaction, by position."""
    t = now()
    ready: dict[int, Prepared] = {}
    keys: set[tuple[str, str]] = set()
    with ctx.store.session(readonly=True) as s:
        for i, o in enumerate(orders):
            if o.key is not None:
                k = (o.caller.name, o.key)
                # Twice in one batch, or used before: the route replays or refuses it.
                if k in keys or s.get(IdempotencyRecord, k) is not None:
                    continue
                keys.add(k)
            try:
                ready[i] = prepare(s, ctx, o.job_order_id, o.body, t)
            except ServingError:
                continue
    return ready


def write_answers(ctx: Any, orders: list[_Order], ready: dict[int, Prepared],
                  responses: dict[int, dict[str, Any]]) -> list[bytes | None]:
    """Record the answers in one transaction; if it fails (a key another worker used
    meanwhile), each alone, where the one that fails again is left to the route."""
    out: list[bytes | None] = [None] * len(orders)
    try:
        with ctx.store.session() as s:
            for i in responses:
                out[i] = _record(s, ctx, orders[i], ready[i], responses[i])
        return out
    except Exception:
        log.warning("the joint write of %d assessments failed; writing each alone",
                    len(responses), exc_info=True)
    out = [None] * len(orders)
    for i in responses:
        try:
            with ctx.store.session() as s:
                out[i] = _record(s, ctx, orders[i], ready[i], responses[i])
        except Exception:
            out[i] = None  # the route assesses it again and answers (a replay here)
    return out


def _record(s: Any, ctx: Any, o: _Order, p: Prepared, response: dict[str, Any]) -> bytes:
    record(s, ctx, o.caller, p, response, o.key)
    remember(s, o.caller, o.key, _request(o), o.body, 200, response)
    return encode(response)
