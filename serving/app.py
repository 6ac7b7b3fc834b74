"""The FastAPI application of the MES decision service, built by ``create_app``.

Settings come in one typed object; the store, the decision policy and the model
sessions are opened once in the lifespan and live in ``app.state.ctx``. Errors are RFC
9457 problems; a body above the configured limit is refused before it is read; plain
predict requests are answered in front of the framework (``serving._fastpath``). A
background task follows the model activations of other workers (``serving._activation``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving._activation import Activations, run_model_poll
from serving._auth import KeyChecker
from serving._errors import FieldError, ServingError, problem
from serving._fastassess import FastAssess
from serving._fastpath import FastPredict
from serving._metrics import Metrics
from serving._models import LoadedModel, ModelSet, load_model, peek_spec
from serving._responses import problem_media
from serving._schemas import parameter_catalogue
from serving._settings import Settings
from serving.domain.policy import Policy, load_policy
from serving.store._db import Store, open_store

__all__ = ["Context", "create_app"]

log = logging.getLogger("asset_twin.serving")
PROBLEM = "application/problem+json"


@dataclass
class Context:
    settings: Settings
    store: Store
    policy: Policy
    models: ModelSet
    keys: KeyChecker
    metrics: Metrics
    activations: Activations
    extra: dict[str, Any] = field(default_factory=dict)


def _problem_response(status: int, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class BodyLimit:
    """Refuses bodies above ``limit`` bytes (Content-Length or counted while streaming)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _too_large(self.limit, scope, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(self.limit, scope, send)


class Measure:
    """Counts every request by method, route template and status, with its latency."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            ctx = getattr(self.state, "ctx", None)
            if ctx is not None:  # the router put the matched route into the scope
                path = getattr(scope.get("route"), "path_format", "unmatched")
                ctx.metrics.observe(scope["method"], path, status,
                                    time.perf_counter() - start)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, scope: Scope, send: Send) -> None:
    body = problem(413, "payload-too-large", "The request is too large",
                   f"the body is larger than {limit} bytes", instance=scope.get("path"))
    await _problem_response(413, body)(scope, _empty, send)


async def _empty() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _allowed(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at the request's path (RFC 9110 15.5.6: ``Allow``)."""
    from starlette.routing import Match

    probe = {**scope, "method": "__none__"}
    methods: set[str] = set()

    def walk(routes: Any) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)  # an included router
            if inner is not None:
                walk(inner.routes)
            elif route.matches(probe)[0] is not Match.NONE:
                methods.update(getattr(route, "methods", None) or ())

    walk(app.router.routes)
    return sorted(methods)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service for ``settings`` (default: from ``TWIN_*`` environment variables)."""
    settings = settings or Settings.from_env()
    specs = [peek_spec(s, cache=settings.model_cache,
                       tracking_uri=settings.mlflow_tracking_uri) for s in settings.models]
    policy = load_policy(settings.policy)
    for spec in specs:
        problems = policy.check_against(spec)
        if problems:
            raise ValueError(f"policy {settings.policy} does not fit spec {spec.name}:\n  "
                             + "\n  ".join(problems))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.database_url)
        loaded: list[LoadedModel] = [
            load_model(s, threads=settings.ort_threads, cache=settings.model_cache,
                       tracking_uri=settings.mlflow_tracking_uri)
            for s in settings.models
        ]
        models = ModelSet(loaded)
        activations = Activations(models, store, settings, policy)
        try:  # a worker started after a reload serves what its siblings serve
            await asyncio.to_thread(activations.sync)
        except Exception:
            log.exception("reading the model activations failed; serving the configured models")
        ctx = Context(settings, store, policy, models,
                      KeyChecker(store.session, settings.key_cache_s), Metrics(), activations)
        app.state.ctx = ctx
        if settings.dev_mode:
            log.warning("dev mode: authentication is OFF; every caller has every scope")
        log.info("serving %s on %s", ", ".join(ctx.models.names()) or "no model",
                 store)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        closers: list[Any] = []
        if settings.models:
            tasks.append(asyncio.create_task(
                run_model_poll(activations, stop, settings.model_poll_s)))
        if settings.webhooks:
            from serving.adapters.webhooks import Dispatcher, run_dispatcher

            dispatcher = Dispatcher.from_settings(store.session, settings)
            closers.append(dispatcher)
            tasks.append(asyncio.create_task(run_dispatcher(
                dispatcher, stop, settings.webhook_poll_s,
                concurrency=settings.webhook_concurrency)))
        if settings.mqtt_url:
            from urllib.parse import urlparse

            from serving.adapters.mqtt import MqttPublisher, run_mqtt

            broker = urlparse(settings.mqtt_url)
            publisher = MqttPublisher(broker.hostname or "127.0.0.1", broker.port or 1883,
                                      topic_root=settings.mqtt_topic_root)
            closers.append(publisher)
            tasks.append(asyncio.create_task(run_mqtt(publisher, store.session, stop)))
        # What start-up built (models, specs, schemas, the framework) lives as long as the
        # process: out of the garbage collector's sight, a full collection no longer walks
        # it, which had put tens of milliseconds into the latency tail under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in closers:
                c.close()
            store.close()

    description = (
        "Decisions per work order for the MES: quality, maintenance, feasibility, and "
        "RELEASE / RELEASE_WITH_ADJUSTMENT / HOLD_FOR_REVIEW / MAINTAIN_FIRST / REROUTE / "
        "UNDECIDED, from ML surrogates of physics models. Advisory only.\n\n"
        "Job order parameters by asset type:\n\n" + parameter_catalogue(specs)
    )
    otel = settings.opentelemetry
    app = FastAPI(title="asset-twin", version="0.1.0", description=description,
                  lifespan=lifespan,
                  telemetry={"tracing": otel, "metrics": otel, "logs": otel})

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return _problem_response(exc.status, problem(
            exc.status, exc.code, exc.title, exc.detail, instance=request.url.path,
            errors=exc.errors), headers=exc.headers() or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e["loc"]]
            if loc and loc[0] in ("body", "query", "path", "header"):
                loc = loc[1:] if loc[0] == "body" else loc
            errors.append(FieldError(".".join(loc) or "body", e.get("input"), e["msg"]))
        return _problem_response(422, problem(
            422, "invalid-request", "The request is not valid",
            f"{len(errors)} field(s) are not valid", instance=request.url.path,
            errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        answer = _problem_response(exc.status_code, problem(
            exc.status_code, code, str(exc.detail), str(exc.detail),
            instance=request.url.path))
        for name, value in (exc.headers or {}).items():
            answer.headers[name] = value
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path; a path
            # served by several routes (GET, PUT, PATCH, DELETE) allows all of theirs.
            answer.headers["Allow"] = ", ".join(_allowed(app, request.scope))
        return answer

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _problem_response(500, problem(
            500, "internal-error", "Internal error",
            "the service failed on this request; the error is logged",
            instance=request.url.path))

    from serving.api import include
    from serving.api.openapi import complete_document

    fast = include(app, specs, settings)
    app.openapi = complete_document(  # type: ignore[method-assign]
        problem_media(app.openapi), app, settings)
    # Outermost last: the body limit, the predict and assessment fast paths, the metrics.
    app.add_middleware(Measure, state=app.state)
    app.add_middleware(FastAssess, state=app.state)
    app.add_middleware(FastPredict, state=app.state, routes=fast)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
