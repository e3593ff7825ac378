"""Prometheus metrics of one server: requests, latency, batch sizes, queue depth (``GET /metrics``).

Each server gets its own registry (two apps in one process, as the tests make, must
not share counters).

Example:
    >>> m = Metrics()
    >>> m.requests.labels(endpoint="/predict", status="200").inc()
    >>> b"kerasafe_requests_total" in m.render()
    True
"""

from __future__ import annotations


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("kerasafe_requests", "requests answered, by endpoint and status", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("kerasafe_request_seconds", "time from request to answer", ["endpoint"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch = Histogram("kerasafe_batch_size", "inputs per predict call", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queue = Gauge("kerasafe_queue_depth", "requests waiting for a batch", registry=self.registry)
        self.in_progress = Gauge("kerasafe_requests_in_progress", "POST requests inside the server", registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    content_type = "text/plain; version=0.0.4; charset=utf-8"
