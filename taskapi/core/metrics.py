"""Prometheus metrics: requests and latency by endpoint, cache hits and misses, plus the job
queue and the email outbox read at scrape time.

Under `taskapi serve` every worker process writes its samples to its own files in
PROMETHEUS_MULTIPROC_DIR (the supervisor sets it, see server.py), so a scrape answered by
any worker sums all of them. The variable must be set before prometheus_client is imported;
without it (tests, a single process) the samples live in this process only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "count_cache", "observe_request", "render",
           "worker_started"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, read by every Prometheus version (names here need no escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ("endpoint", "method", "status")

REQUESTS = Counter("taskapi_http_requests", "HTTP requests answered.", _LABELS)
LATENCY = Histogram("taskapi_http_request_duration_seconds",
                    "Time from the app first seeing the request to the response, seconds.",
                    _LABELS)
CACHE = Counter("taskapi_cache_lookups", "Response cache lookups (a miss includes Redis down).",
                ("cache", "result"))
WORKERS = Gauge("taskapi_http_workers", "Serving processes alive.", multiprocess_mode="livesum")

# Only these reach the method label: any other token a client sends is "OTHER", so a client
# cannot grow the label set (endpoint names come from the URL map, statuses are 3 digits).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Labelled children, made once per combination: labels() takes a lock and builds a tuple key
# on every call, and in multiprocess mode a new child also reads its mmap file.
_request_children: dict[tuple[str | None, str, int], tuple[Counter, Histogram]] = {}
_cache_children: dict[tuple[str, bool], Counter] = {}


def observe_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    if method not in _METHODS:
        method = "OTHER"
    key = (endpoint, method, status)
    children = _request_children.get(key)
    if children is None:
        # The /api/v1 mirror and the aliases are the same operation: one series per operation.
        name = (endpoint.removeprefix("v1_").removesuffix("_alias") if endpoint
                else "unmatched")
        labels = (name, method, str(status))
        children = _request_children[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    children[0].inc()
    children[1].observe(seconds)


def count_cache(key: str, hit: bool) -> None:
    """`key` is a cache key, "c:<cache>:…"; its second part names the cache."""
    cache = key.split(":", 2)[1] if key.count(":") else key
    child = _cache_children.get((cache, hit))
    if child is None:
        child = _cache_children[(cache, hit)] = CACHE.labels(cache, "hit" if hit else "miss")
    child.inc()


def worker_started() -> None:
    WORKERS.set(1)


class _Snapshot(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


_registry: CollectorRegistry | None = None


def _process_registry() -> CollectorRegistry:
    """All workers' samples in multiprocess mode, else this process's default registry."""
    global _registry
    if _registry is None:
        if os.environ.get(MULTIPROC_ENV):
            _registry = CollectorRegistry()
            MultiProcessCollector(_registry)
        else:
            _registry = REGISTRY
    return _registry


def render(scraped: Iterable[Metric]) -> bytes:
    """The text exposition: the recorded samples, then the families read at scrape time."""
    snapshot = CollectorRegistry(auto_describe=True)
    snapshot.register(_Snapshot(scraped))
    return generate_latest(_process_registry()) + generate_latest(snapshot)
