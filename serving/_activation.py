"""Loading a new champion while serving, in this process and in every other one.

``POST /v1/models/{name}/reload`` (``Activations.reload``) loads the source beside the
model being served, checks that it can take its place, records the switch (a
``model_activations`` row, an audit record and a ``MODEL_ACTIVATED`` event, in one
transaction) and swaps the reference: requests in flight finish on the model they
started with, new ones get the new one. Without a source, the model's current source is
loaded again, so ``models:/<name>@champion`` is resolved anew and a newly promoted
version is picked up.

A replacement must have the same name and the same ``schema_key`` (input names, kinds,
units and choices) as the model served at start-up, since the request schemas were
derived from that, and the decision policy must fit its spec; otherwise the reload is a
409 and nothing changes. Reloading the bundle already served is allowed: it is recorded
like any other activation (an administrator's act belongs in the audit trail), and the
answer says ``changed: false``.

Other workers (``twin serve --workers N``) and replicas on the same database follow:
each process polls ``model_activations`` every ``settings.model_poll_s`` seconds and,
for every model it serves, loads the latest activation when its bundle hash differs
from what it serves (a registry alias pinned to the activated version, so all converge
on exactly that bundle), under the same guards. The latest activation also wins at
start-up: a worker started later serves what its siblings serve.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from contextlib import suppress
from typing import Any

from serving._errors import BadRequest, Conflict, FieldError, NotFound
from serving._models import (
    LoadedModel,
    ModelLoadError,
    ModelNotFound,
    ModelSet,
    load_model,
    pinned_source,
)
from serving._settings import Settings
from serving.domain.policy import Policy
from serving.store._activations import last_activation_id, latest_activation, record_activation
from serving.store._db import Store

__all__ = ["Activations", "run_model_poll"]

log = logging.getLogger("asset_twin.serving")

SOURCE_TEXT = "a bundle folder or models:/<name>@<alias> (or /<version>) in the registry"


class Activations:
    """This process's side of the activations: one switch at a time, reloads and polls."""

    def __init__(self, models: ModelSet, store: Store, settings: Settings,
                 policy: Policy) -> None:
        self.models, self.store, self.settings, self.policy = models, store, settings, policy
        self._lock = threading.Lock()
        self._checked: int | None = None  # highest activation id the last full poll saw
        self._refused: set[int] = set()  # activations this process can never serve

    def _load(self, source: str) -> LoadedModel:
        s = self.settings
        return load_model(source, threads=s.ort_threads, cache=s.model_cache,
                          tracking_uri=s.mlflow_tracking_uri)

    def _refusal(self, name: str, new: LoadedModel, source: str) -> list[FieldError]:
        """Why ``new`` cannot serve as ``name`` without a restart (empty: it can)."""
        if new.name != name:
            return [FieldError("source", source,
                               f"a bundle of model {name!r} (this one is {new.name!r})")]
        problems = []
        if new.schema_key != self.models.schema_key(name):
            problems.append(FieldError(
                "source", source,
                f"a bundle with the inputs of the served {name!r} (names, kinds, units and "
                "choices): the request schemas were derived from them at start-up, so "
                "other inputs need a restart"))
        misfit = self.policy.check_against(new.spec)
        if misfit:
            problems.append(FieldError(
                "source", source,
                f"a bundle that policy {self.policy.ref()['id']!r} fits: " + "; ".join(misfit)))
        return problems

    def reload(self, name: str, source: str | None, caller: str) -> dict[str, Any]:
        """Serve ``name`` from ``source`` (default: its current source) from now on; the
        new model's description with ``previous`` (version, bundle hash) and ``changed``."""
        with self._lock:
            old = self.models.find(name)
            if old is None:
                raise NotFound(
                    f"no model {name!r} is loaded",
                    [FieldError("name", name, "one of " + (", ".join(self.models.names())
                                                           or "(none loaded)"))])
            src = old.source if source is None else source
            try:
                new = self._load(src)
            except ModelNotFound as exc:
                raise NotFound(str(exc), [FieldError("source", src, SOURCE_TEXT)]) from None
            except ModelLoadError as exc:
                raise BadRequest(str(exc), [FieldError(
                    "source", src, "a model bundle that loads: " + str(exc))]) from None
            problems = self._refusal(name, new, src)
            if problems:
                raise Conflict(f"{src} cannot replace model {name!r} while serving",
                               problems)
            previous = {"version": old.version, "bundle_hash": old.bundle_hash,
                        "source": old.source}
            with self.store.session() as s:
                row = record_activation(
                    s, name=name, source=src, version=new.version,
                    bundle_hash=new.bundle_hash, caller=caller, previous=previous,
                    event_source=self.settings.event_source)
                activation_id = row.id
            self.models.put(new)
            # A sibling's activation may have committed just before this one: the next
            # poll compares every name with the latest row again.
            self._checked = None
        log.info("model %s: %s (%s, %s) activated by %s, was %s (%s)", name, src,
                 new.version, new.bundle_hash[:12], caller, old.version, old.bundle_hash[:12])
        return {**new.describe(), "previous": previous,
                "changed": new.bundle_hash != old.bundle_hash, "activation_id": activation_id}

    def sync(self) -> list[str]:
        """One poll: serve the latest activation of every model this process serves;
        returns the names switched."""
        switched: list[str] = []
        with self._lock:
            with self.store.session(readonly=True) as s:
                top = last_activation_id(s)
                if top == self._checked:
                    return switched
                latest = {n: latest_activation(s, n) for n in self.models.names()}
            settled = True
            for name, row in latest.items():
                current = self.models.find(name)
                if row is None or current is None or row.id in self._refused:
                    continue
                if current.bundle_hash == row.bundle_hash:
                    continue
                try:
                    new = self._load(pinned_source(row.source, row.version))
                except ModelLoadError as exc:
                    log.warning("model %s: activation %d (%s) does not load here, retrying "
                                "on the next poll: %s", name, row.id, row.source, exc)
                    settled = False
                    continue
                problems = self._refusal(name, new, row.source)
                if new.bundle_hash != row.bundle_hash:
                    problems.append(FieldError("source", row.source,
                                               f"bundle {row.bundle_hash[:12]}, as activated"))
                if problems:
                    log.error("model %s: activation %d (%s) is not served by this process: %s",
                              name, row.id, row.source,
                              "; ".join(f"expected {p.expected}" for p in problems))
                    self._refused.add(row.id)
                    continue
                self.models.put(dataclasses.replace(new, source=row.source))
                switched.append(name)
                log.info("model %s: now serving activation %d (%s, %s)", name, row.id,
                         row.version, row.bundle_hash[:12])
            self._checked = top if settled else None
        return switched


async def run_model_poll(activations: Activations, stop: asyncio.Event,
                         interval_s: float) -> None:
    """Poll until ``stop`` is set; for a task in the FastAPI lifespan. Errors (a database
    that went away) are logged and retried on the next round."""
    while not stop.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if stop.is_set():
            return
        try:
            await asyncio.to_thread(activations.sync)
        except Exception:
            log.exception("model activation poll failed")
