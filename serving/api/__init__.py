"""The HTTP layer: routers by resource (``routes/``), their dependencies (``deps``)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from physics.spec import TwinSpec
from serving._settings import Settings

__all__ = ["include"]


def include(app: FastAPI, specs: list[TwinSpec], settings: Settings,
            ) -> dict[str, tuple[str, Any]]:
    """Add every router to ``app``; returns the predict routes (path: model name and
    request model) for ``serving._fastpath.FastPredict``."""
    from serving._auth import CHALLENGES, challenge_problem
    from serving.api.deps import refuse_unknown_query
    from serving.api.routes import assets, audit, events, health, models, webhooks, work_orders

    predict, fast = models.predict_router(specs, settings)
    for router in (health.router, models.router, predict, assets.router,
                   work_orders.router, events.router, webhooks.router, audit.router):
        app.include_router(router, dependencies=[Depends(refuse_unknown_query)])
    for error in CHALLENGES:  # 401 and 403 with their WWW-Authenticate challenge
        app.add_exception_handler(error, challenge_problem)
    return fast
