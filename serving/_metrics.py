"""Prometheus metrics of one process (several workers: one series per process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.requests = Counter("twin_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "twin_http_request_seconds", "Request latency", ["route"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
        )
        self.predictions = Counter("twin_predictions_total", "Rows predicted", ["model"],
                                   registry=self.registry)
        self.batch_rows = Histogram(
            "twin_model_batch_rows", "Rows per model call of the predict route's shared "
            "batches (its count is the number of model calls)", ["model"],
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.assessment_batch = Histogram(
            "twin_assessment_batch_orders", "Orders per batch of the single-assessment "
            "fast path (serving._fastassess; its count is the number of batches)",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32),
        )
        self.out_of_domain = Counter("twin_out_of_domain_total",
                                     "Rows outside the training domain", ["model"],
                                     registry=self.registry)
        self.decisions = Counter("twin_decisions_total", "Decisions issued", ["type"],
                                 registry=self.registry)
        self.backlog = Gauge("twin_webhook_backlog", "Webhook deliveries pending",
                             registry=self.registry)
        self.webhook_queue = Gauge(
            "twin_webhook_queue", "Deliveries per webhook: pending (its backlog) and dead "
            "(dead letters, replayable)", ["webhook", "status"], registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled children, looked up once per (method, route, status): prometheus'
        # labels() costs a few microseconds a call on the hottest path.
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)), self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
