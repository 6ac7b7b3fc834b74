"""The served models: list, describe, reload, and one raw predict route per spec."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from physics.spec import TwinSpec
from serving._fastpath import predict_answer
from serving._predict_schemas import PredictOut, predict_request_model
from serving._responses import ModelList, ModelOut, ReloadOut, answers
from serving._schemas import ReloadIn
from serving._settings import Settings
from serving.api.deps import AdminCaller, PredictCaller, ctx_of, json_response

router = APIRouter(tags=["models"])


@router.get("/v1/models", operation_id="listModels", **answers(ModelList, 401, 403, 422))
def models(request: Request, caller: PredictCaller) -> dict[str, Any]:
    return {"models": [m.describe() for m in ctx_of(request).models.all()]}


@router.get("/v1/models/{name}", operation_id="getModel",
            **answers(ModelOut, 401, 403, 404, 422))
def model(name: str, request: Request, caller: PredictCaller) -> dict[str, Any]:
    described: dict[str, Any] = ctx_of(request).models.get(name).describe()
    return described


@router.post("/v1/models/{name}/reload", operation_id="reloadModel",
             **answers(ReloadOut, 400, 401, 403, 404, 409, 413, 422))
def reload(name: str, request: Request, caller: AdminCaller,
           body: ReloadIn | None = None) -> dict[str, Any]:
    """Serve a new bundle (or the current source again) without dropping requests in
    flight; recorded as an activation, an audit record and a model.activated event,
    and followed by every worker. The same bundle again is allowed and recorded
    (``changed: false``)."""
    source = body.source if body is not None else None
    out: dict[str, Any] = ctx_of(request).activations.reload(name, source, caller.name)
    return out


def predict_router(specs: list[TwinSpec], settings: Settings,
                   ) -> tuple[APIRouter, dict[str, tuple[str, Any]]]:
    """The predict route of every spec, and for ``serving._fastpath.FastPredict`` each
    route's path with its model name and request model (the fast path answers the plain
    requests of these routes before FastAPI sees them)."""
    r = APIRouter(tags=["models"])
    fast: dict[str, tuple[str, Any]] = {}
    for spec in specs:
        body_model = predict_request_model(spec, settings.max_batch)
        path = f"/v1/models/{spec.name}/predict"
        r.add_api_route(path, _predict_handler(spec.name, body_model), methods=["POST"],
                        summary=f"Raw predictions of {spec.name}",
                        description=spec.description,
                        operation_id=f"predict_{spec.name}",
                        **answers(PredictOut, 400, 401, 403, 404, 413, 422))
        fast[path] = (spec.name, body_model)
    return r, fast


def _predict_handler(name: str, body_model: Any) -> Any:
    def predict(body: body_model, request: Request,
                caller: PredictCaller) -> Any:
        rows = [row.model_dump() for row in body.rows]
        return json_response(predict_answer(ctx_of(request), name, rows))

    predict.__annotations__["body"] = body_model  # a class built at run time
    return predict
