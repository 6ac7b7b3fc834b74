"""The event outbox, replayed in order from a cursor."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from serving._responses import EventList, answers
from serving.api.deps import MAX_SEQ, OrdersCaller, ctx_of
from serving.store._outbox import events_after

router = APIRouter(tags=["events"])


@router.get("/v1/events", operation_id="listEvents", **answers(EventList, 401, 403, 422))
def events(request: Request, caller: OrdersCaller,
           after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    with ctx_of(request).store.session(readonly=True) as s:
        rows = events_after(s, after_seq, limit=limit)
        return {"events": [e.envelope for e in rows],
                "last_seq": rows[-1].seq if rows else after_seq}
