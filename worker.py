"""Checkout shim: `arq worker.WorkerSettings` still works; the settings live in
taskapi/ops/worker.py (`taskapi worker` runs them with its Redis connection)."""

from taskapi.ops.worker import WorkerSettings

__all__ = ["WorkerSettings"]
