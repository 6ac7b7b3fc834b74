"""Liveness, readiness and the Prometheus metrics page (no credentials)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from serving._responses import HealthOut, ReadyOut
from serving.api.deps import ctx_of

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, operation_id="getHealth")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyOut, operation_id="getReadiness",
            responses={503: {"model": ReadyOut, "description": "Not ready"}})
def readyz(request: Request) -> JSONResponse:
    ctx = ctx_of(request)
    checks: dict[str, Any] = {"models": ctx.models.names()}
    try:
        ctx.store.ping()
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    ready = checks["database"] == "ok" and bool(checks["models"] or not ctx.settings.models)
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse, operation_id="getMetrics")
def metrics(request: Request) -> Response:
    ctx = ctx_of(request)
    from serving.adapters.webhooks import backlog, queue_counts

    try:
        with ctx.store.session(readonly=True) as s:
            ctx.metrics.backlog.set(backlog(s))
            per_webhook = queue_counts(s)
        ctx.metrics.webhook_queue.clear()  # a webhook deleted since is no series any more
        for hook_id, (pending, dead) in per_webhook.items():
            ctx.metrics.webhook_queue.labels(hook_id, "pending").set(pending)
            ctx.metrics.webhook_queue.labels(hook_id, "dead").set(dead)
    except Exception:  # the metrics page must render while the database is down
        pass
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")
