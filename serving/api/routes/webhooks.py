"""Webhook subscriptions: where the events are delivered, signed with a secret."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from serving._responses import WebhookCreated, WebhookList, answers
from serving._schemas import WebhookIn
from serving.api.deps import AdminCaller, ctx_of
from serving.store._audit import append_audit
from serving.store._tables import Webhook

router = APIRouter(tags=["events"])


@router.post("/v1/webhooks", status_code=201, operation_id="createWebhook",
             **answers(WebhookCreated, 400, 401, 403, 413, 422))
def add_webhook(body: WebhookIn, request: Request, caller: AdminCaller) -> dict[str, Any]:
    from serving.adapters.webhooks import new_secret

    hook = Webhook(id=uuid.uuid4().hex[:16], url=body.url, secret=new_secret(),
                   event_types=body.event_types, active=True)
    with ctx_of(request).store.session() as s:
        s.add(hook)
        append_audit(s, kind="webhook", subject=f"webhook/{hook.id}", caller=caller.name,
                     inputs=body.model_dump(mode="json"), outputs={"id": hook.id})
    # The secret is shown once: the receiver verifies signatures with it.
    return {"id": hook.id, "url": hook.url, "event_types": hook.event_types,
            "secret": hook.secret}


@router.get("/v1/webhooks", operation_id="listWebhooks", **answers(WebhookList, 401, 403, 422))
def list_webhooks(request: Request, caller: AdminCaller) -> dict[str, Any]:
    with ctx_of(request).store.session(readonly=True) as s:
        hooks = s.scalars(select(Webhook).order_by(Webhook.created_at)).all()
        return {"webhooks": [{"id": h.id, "url": h.url, "event_types": h.event_types,
                              "active": h.active} for h in hooks]}
