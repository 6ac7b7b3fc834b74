"""The predict route answered without the framework around it, for the MES's hot loop.

``POST /v1/models/{name}/predict`` is the route a line controller may call for every
part. For a one-row request FastAPI's routing, dependency injection, hop to the thread
pool and response encoding cost several times what the surrogate does, so ``FastPredict``
sits in front of the FastAPI application and answers that route itself when the request
is a plain one: the exact path and method, credentials with the ``predict`` scope, and a
body that the route's own request model accepts (pydantic-core validates the raw JSON,
with the same model the OpenAPI document shows). Everything else goes on to the FastAPI
route with the body already read: missing or bad credentials, a body that does not
validate, a model that is not loaded. The errors a client sees are therefore the ones
the route raises, and the answer is built by the same function, ``predict_answer``, and
encoded with orjson. Request metrics are counted under the route's path either way.

Requests that arrive together share one model call (dynamic batching, as inference
servers do): a plain request's rows join the model's pending batch, which runs once the
event loop has taken in every request that is ready, at most ``MAX_BATCH_ROWS`` rows at
a time; each request then gets its own rows' answer, the same numbers as alone (the
graph is row-wise; the tests check it). When the shared call fails (a model unloaded
under it, a row it cannot encode), every request of the batch goes on to the FastAPI
route alone and gets its own answer or problem. Batches above ``INLINE_ROWS`` rows run
alone in a worker thread, so that a big batch does not hold the event loop while other
requests wait.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving._auth import DEV_CALLER, presented_token
from serving._errors import ServingError
from serving._predict import Prediction, predict_rows

__all__ = ["JSON_HEADERS", "FastPredict", "predict_answer", "read_body", "replay_body"]

INLINE_ROWS = 32
MAX_BATCH_ROWS = 256
# Loop turns a batch waits for more requests before it runs (each a few microseconds;
# on the demo bundle at 16 connections: 0 turns 2,580 req/s, 2 turns 2,830, 4 turns 3,030).
DEFER_TURNS = 4
JSON_HEADERS = [(b"content-type", b"application/json")]


def predict_answer(ctx: Any, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer of the predict route for validated ``rows`` (one model call), counted
    in the metrics: per row the KPIs with mean, std and interval, the event
    probabilities, the in-domain flag and the violated bounds or constraints."""
    model = ctx.models.get(name)
    return _answer_of(ctx, name, model, predict_rows(model, rows), 0, len(rows))


def _answer_of(ctx: Any, name: str, model: Any, pred: Prediction, start: int, count: int
               ) -> dict[str, Any]:
    """The answer for rows ``start`` to ``start + count`` of a prediction."""
    out = [pred.row(i) for i in range(start, start + count)]
    ctx.metrics.predictions.labels(name).inc(count)
    bad = sum(1 for o in out if not o["in_domain"])
    if bad:
        ctx.metrics.out_of_domain.labels(name).inc(bad)
    return {
        "model": {"name": name, "version": model.version, "bundle_hash": model.bundle_hash},
        "interval": {"level": model.level, "method": model.signature["interval"]["method"]},
        "rows": out,
    }


class _Batch:
    """The pending rows of one model's concurrent requests, run as one model call on the
    event loop's next turn (or at once when ``MAX_BATCH_ROWS`` are waiting)."""

    def __init__(self, ctx: Any, name: str) -> None:
        self.ctx, self.name = ctx, name
        self.waiting: list[tuple[list[dict[str, Any]], asyncio.Future[dict[str, Any]]]] = []
        self.rows = 0

    async def answer(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if not self.waiting:
            loop.call_soon(self._after, DEFER_TURNS)
        self.waiting.append((rows, future))
        self.rows += len(rows)
        if self.rows >= MAX_BATCH_ROWS:
            self.run()
        return await future

    def _after(self, turns: int) -> None:
        """Run once the loop has gone round ``turns`` more times: requests whose bytes
        arrived meanwhile are read (one turn) and reach the batch (the next)."""
        if turns > 0 and self.waiting:
            asyncio.get_running_loop().call_soon(self._after, turns - 1)
        else:
            self.run()

    def run(self) -> None:
        waiting, self.waiting, self.rows = self.waiting, [], 0
        if not waiting:  # run early by a full batch; this turn's call finds it empty
            return
        try:
            model = self.ctx.models.get(self.name)
            batch = [row for rows, _ in waiting for row in rows]
            pred = predict_rows(model, batch)
            self.ctx.metrics.batch_rows.labels(self.name).observe(len(batch))
            start = 0
            for rows, future in waiting:
                if not future.done():  # (a request whose client left is cancelled)
                    future.set_result(
                        _answer_of(self.ctx, self.name, model, pred, start, len(rows)))
                start += len(rows)
        except Exception as exc:  # each request then asks the route alone
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)


class FastPredict:
    """ASGI middleware: answers valid predict requests; passes the rest to ``app``.

    ``routes`` maps each predict path to its model name and request model; ``state`` is
    the application whose ``state.ctx`` the lifespan fills.
    """

    def __init__(self, app: ASGIApp, state: Any, routes: dict[str, tuple[str, type[BaseModel]]],
                 ) -> None:
        self.app, self.state = app, state
        self.routes = {path.encode(): v for path, v in routes.items()}
        self._batches: dict[str, _Batch] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope.get("raw_path") or b"") if scope["type"] == "http" else None
        ctx = getattr(self.state, "ctx", None)
        if route is None or scope["method"] != "POST" or ctx is None or scope.get(
                "query_string"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        body, more = await read_body(receive)
        answer = None if more else await self._answer(ctx, scope, route, body)
        if answer is None:  # the FastAPI route decides, and says why
            await self.app(scope, replay_body(body, more, receive), send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})
        ctx.metrics.observe("POST", scope["path"], 200, time.perf_counter() - start)

    async def _answer(self, ctx: Any, scope: Scope, route: tuple[str, type[BaseModel]],
                      body: bytes) -> bytes | None:
        name, model = route
        try:
            if not ctx.settings.dev_mode:
                headers = dict(scope["headers"])
                token = presented_token(_text(headers.get(b"authorization")),
                                        _text(headers.get(b"x-api-key")))
                ctx.keys.check(token).require("predict")
            else:
                DEV_CALLER.require("predict")
            request = model.model_validate_json(body)
            rows = [row.model_dump() for row in request.rows]  # type: ignore[attr-defined]
            if len(rows) > INLINE_ROWS:
                out = await asyncio.to_thread(predict_answer, ctx, name, rows)
            else:
                out = await self._batch(ctx, name).answer(rows)
            return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
        except (ServingError, ValidationError, ValueError, TypeError, KeyError):
            return None
        except Exception:  # a batch that failed for a reason of its own: the route decides
            return None

    def _batch(self, ctx: Any, name: str) -> _Batch:
        """The model's batch in this service context (a new context, a new batch)."""
        batch = self._batches.get(name)
        if batch is None or batch.ctx is not ctx:
            batch = self._batches[name] = _Batch(ctx, name)
        return batch


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def read_body(receive: Receive) -> tuple[bytes, bool]:
    """The body (what came before a disconnect); ``more`` when the client went away."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def replay_body(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    """A ``receive`` that hands ``body`` over once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if disconnected:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
