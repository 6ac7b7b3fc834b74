"""Webhook subscriptions: where the events are delivered, signed with a secret, and the
queue of each, with its dead letters listed and replayed.

``PATCH`` is a JSON Merge Patch (RFC 7396): it changes only the keys it names. A changed
URL, or a webhook enabled again, has its pending deliveries tried at once. While a
webhook is disabled no deliveries are queued for it (read what it missed from
``GET /v1/events?after_seq=``). A secret rotation answers the new secret once; the old
one keeps signing beside it for ``grace_s`` (one older secret at most: a second rotation
within the grace period drops the first one's). Every change writes an audit record in
its transaction; a secret never enters one.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from serving._errors import BadRequest, Conflict, FieldError, NotFound
from serving._responses import (
    DeadLetterList,
    DeadLetterReplay,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookSecret,
    answers,
    problems,
)
from serving._schemas import DeadLetterReplayIn, SecretRotationIn, WebhookIn, WebhookPatch
from serving.adapters._webhook_queue import (
    dead_letter_rows,
    dead_reason,
    queue_counts,
    replay_dead_letters,
)
from serving.adapters._webhook_signing import new_secret
from serving.api.deps import (
    AdminCaller,
    CursorParam,
    Limit,
    aware,
    ctx_of,
    decode_cursor,
    merge_patch,
    merge_patch_body,
    now,
    page,
)
from serving.store._audit import append_audit
from serving.store._outbox import EVENT_TYPES
from serving.store._tables import Delivery, Webhook

__all__ = ["router"]

router = APIRouter(tags=["webhooks"])

WebhookId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                description="The id the webhook was created with")]


def _missing(hook_id: str) -> NotFound:
    return NotFound(f"no webhook {hook_id!r}", [FieldError(
        "webhook_id", hook_id, "the id of a webhook (GET /v1/webhooks lists them)")])


def _iso(value: Any) -> str | None:
    return None if value is None else aware(value).isoformat()


def _out(row: Webhook, counts: tuple[int, int]) -> dict[str, Any]:
    grace = row.previous_secret_expires_at
    in_grace = row.previous_secret is not None and grace is not None and aware(grace) > now()
    return {
        "id": row.id, "url": row.url, "event_types": list(row.event_types or []),
        "description": row.description or "", "active": row.active,
        "disabled_reason": row.disabled_reason, "max_backlog": row.max_backlog,
        "pending": counts[0], "dead_letters": counts[1],
        "previous_secret_expires_at": _iso(grace) if in_grace else None,
        "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at),
    }


def _counts(s: Session, hook_id: str) -> tuple[int, int]:
    return queue_counts(s, [hook_id]).get(hook_id, (0, 0))


def _locked(s: Session, hook_id: str) -> Webhook:
    """The webhook, its row locked until the transaction ends (the first lock taken: see
    ``serving.adapters._webhook_queue``)."""
    row = s.execute(select(Webhook).where(Webhook.id == hook_id).with_for_update()).scalar()
    if row is None:
        raise _missing(hook_id)
    return row


def _event_types(types: list[str]) -> list[str]:
    for i, name in enumerate(types):
        if name not in EVENT_TYPES:
            raise BadRequest(f"unknown event type {name!r}", [FieldError(
                f"event_types[{i}]", name, "one of " + ", ".join(sorted(EVENT_TYPES)))])
    return list(dict.fromkeys(types))


def _audit(s: Session, caller: AdminCaller, hook_id: str, inputs: dict[str, Any],
           outputs: dict[str, Any]) -> None:
    append_audit(s, kind="webhook", subject=f"webhook/{hook_id}", caller=caller.name,
                 inputs=inputs, outputs=outputs)


@router.post("/v1/webhooks", status_code=201, operation_id="createWebhook",
             **answers(WebhookCreated, 400, 401, 403, 413, 422))
def create_webhook(body: WebhookIn, request: Request, caller: AdminCaller) -> dict[str, Any]:
    """Subscribe a URL to events; the answer carries the signing secret, shown once."""
    types = _event_types(body.event_types)
    t = now()
    hook = Webhook(id=uuid.uuid4().hex[:16], url=body.url, secret=new_secret(),
                   event_types=types, active=True, description=body.description,
                   max_backlog=body.max_backlog, created_at=t, updated_at=t)
    with ctx_of(request).store.session() as s:
        s.add(hook)
        s.flush()
        out = _out(hook, (0, 0))
        _audit(s, caller, hook.id, {"method": "POST", **body.model_dump(mode="json")}, out)
    return {**out, "secret": hook.secret}


@router.get("/v1/webhooks", operation_id="listWebhooks", **answers(WebhookList, 401, 403, 422))
def list_webhooks(request: Request, caller: AdminCaller, limit: Limit = 100,
                  cursor: CursorParam = None) -> dict[str, Any]:
    """Every webhook, by id, one page at a time (no secrets)."""
    after = decode_cursor(cursor, str, "/v1/webhooks")
    query = select(Webhook).order_by(Webhook.id).limit(limit + 1)
    if after is not None:
        query = query.where(Webhook.id > after)
    with ctx_of(request).store.session(readonly=True) as s:
        kept, next_cursor = page(list(s.scalars(query)), limit, lambda h: h.id)
        counts = queue_counts(s, [h.id for h in kept])
        return {"webhooks": [_out(h, counts.get(h.id, (0, 0))) for h in kept],
                "next_cursor": next_cursor}


@router.get("/v1/webhooks/{webhook_id}", operation_id="getWebhook",
            **answers(WebhookOut, 401, 403, 404, 422))
def get_webhook(webhook_id: WebhookId, request: Request, caller: AdminCaller) -> dict[str, Any]:
    with ctx_of(request).store.session(readonly=True) as s:
        row = s.get(Webhook, webhook_id)
        if row is None:
            raise _missing(webhook_id)
        return _out(row, _counts(s, webhook_id))


@router.patch("/v1/webhooks/{webhook_id}", operation_id="updateWebhook",
              openapi_extra=merge_patch_body(WebhookPatch),
              **answers(WebhookOut, 400, 401, 403, 404, 413, 415, 422))
def update_webhook(
    webhook_id: WebhookId, request: Request, caller: AdminCaller,
    body: Annotated[WebhookPatch, Depends(merge_patch(WebhookPatch))],
) -> dict[str, Any]:
    """Change what the patch names: ``url``, ``event_types`` (null: every type),
    ``description`` (null: empty), ``max_backlog`` (a lower bound dead-letters the
    oldest pending deliveries on the dispatcher's next round), ``active``."""
    sent = body.model_dump(mode="json", exclude_unset=True)
    with ctx_of(request).store.session() as s:
        row = _locked(s, webhook_id)
        retry_now = False
        if "url" in sent:
            retry_now = sent["url"] != row.url
            row.url = sent["url"]
        if "event_types" in sent:
            row.event_types = _event_types(sent["event_types"] or [])
        if "description" in sent:
            row.description = sent["description"] or ""
        if "max_backlog" in sent:
            row.max_backlog = sent["max_backlog"]
        if "active" in sent and sent["active"] != row.active:
            retry_now = retry_now or sent["active"]
            row.active = sent["active"]
            row.disabled_reason = None if row.active else f"disabled by {caller.name}"
        t = now()
        row.updated_at = t
        if retry_now:  # a receiver that was fixed need not wait out the backoff
            s.execute(update(Delivery)
                      .where(Delivery.webhook_id == webhook_id, Delivery.status == "pending")
                      .values(next_attempt_at=t).execution_options(synchronize_session=False))
        s.flush()
        out = _out(row, _counts(s, webhook_id))
        _audit(s, caller, webhook_id, {"method": "PATCH", **sent}, out)
        return out


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, operation_id="deleteWebhook",
               response_class=Response, responses=problems(401, 403, 404, 422))
def delete_webhook(webhook_id: WebhookId, request: Request, caller: AdminCaller) -> Response:
    """Unsubscribe: the webhook and every delivery owed to it are gone (the events stay)."""
    with ctx_of(request).store.session() as s:
        row = _locked(s, webhook_id)
        counts = _counts(s, webhook_id)
        s.execute(delete(Delivery).where(Delivery.webhook_id == webhook_id))
        out = _out(row, counts)
        s.delete(row)
        _audit(s, caller, webhook_id, {"method": "DELETE"}, out)
    return Response(status_code=204)


@router.post("/v1/webhooks/{webhook_id}:rotate-secret", operation_id="rotateWebhookSecret",
             **answers(WebhookSecret, 400, 401, 403, 404, 413, 422))
def rotate_secret(webhook_id: WebhookId, request: Request, caller: AdminCaller,
                  body: SecretRotationIn | None = None) -> dict[str, Any]:
    """A new signing secret, answered once. For ``grace_s`` (default one day) every
    delivery carries two signatures, one per secret, so a receiver verifies with either
    while it is switched over."""
    body = body or SecretRotationIn.model_validate({})
    t = now()
    with ctx_of(request).store.session() as s:
        row = _locked(s, webhook_id)
        fresh = new_secret()
        if body.grace_s > 0:
            row.previous_secret = row.secret
            row.previous_secret_expires_at = t + timedelta(seconds=body.grace_s)
        else:
            row.previous_secret = row.previous_secret_expires_at = None
        row.secret = fresh
        row.updated_at = t
        s.flush()
        until = _iso(row.previous_secret_expires_at)
        _audit(s, caller, webhook_id, {"method": "ROTATE-SECRET", "grace_s": body.grace_s},
               {"previous_secret_expires_at": until})
    return {"id": webhook_id, "secret": fresh, "previous_secret_expires_at": until}


@router.get("/v1/webhooks/{webhook_id}/dead-letters", operation_id="listDeadLetters",
            **answers(DeadLetterList, 401, 403, 404, 422))
def list_dead_letters(webhook_id: WebhookId, request: Request, caller: AdminCaller,
                      limit: Limit = 100, cursor: CursorParam = None) -> dict[str, Any]:
    """The deliveries given up on, oldest event first, and why each died."""
    after = decode_cursor(cursor, int, "dead letters")
    with ctx_of(request).store.session(readonly=True) as s:
        if s.get(Webhook, webhook_id) is None:
            raise _missing(webhook_id)
        rows = dead_letter_rows(s, webhook_id, after_seq=after or 0, limit=limit + 1)
    kept, next_cursor = page(rows, limit, lambda r: r.event_seq)
    return {"dead_letters": [{
        "event_seq": r.event_seq, "event_id": r.id, "type": r.type, "subject": r.subject,
        "time": _iso(r.time), "attempts": r.attempts, "reason": dead_reason(r.last_error),
        "last_error": r.last_error} for r in kept], "next_cursor": next_cursor}


@router.post("/v1/webhooks/{webhook_id}/dead-letters:replay", operation_id="replayDeadLetters",
             **answers(DeadLetterReplay, 400, 401, 403, 404, 409, 413, 422))
def replay(webhook_id: WebhookId, request: Request, caller: AdminCaller,
           body: DeadLetterReplayIn | None = None) -> dict[str, Any]:
    """Queue dead letters again (all, or ``event_seqs``), oldest first, as many as the
    queue has room for below ``max_backlog``; they are sent from attempt one, in event
    order, ahead of newer pending deliveries."""
    wanted = None if body is None or body.event_seqs is None else list(body.event_seqs)
    with ctx_of(request).store.session() as s:
        row = _locked(s, webhook_id)
        pending, dead = _counts(s, webhook_id)
        if wanted is not None:
            known = {r.event_seq for r in dead_letter_rows(
                s, webhook_id, after_seq=min(wanted) - 1, limit=dead or 1)}
            for i, seq in enumerate(wanted):
                if seq not in known:
                    raise BadRequest(f"event {seq} is not a dead letter of this webhook", [
                        FieldError(f"event_seqs[{i}]", seq, "the event_seq of one of its "
                                   "dead letters (GET .../dead-letters)")])
        room = row.max_backlog - pending
        if room <= 0 and dead:
            raise Conflict(f"the queue is full: {pending} pending, max_backlog "
                           f"{row.max_backlog}", [FieldError(
                               "max_backlog", row.max_backlog, f"above {pending} (PATCH the "
                               "webhook), or replay once the pending deliveries are sent")])
        seqs = replay_dead_letters(s, webhook_id, at=now(), event_seqs=wanted,
                                   room=max(room, 0)) if dead else []
        out = {"replayed": seqs, "pending": pending + len(seqs),
               "dead_letters": dead - len(seqs)}
        _audit(s, caller, webhook_id, {"method": "REPLAY-DEAD-LETTERS",
                                       "event_seqs": wanted}, out)
        return out
