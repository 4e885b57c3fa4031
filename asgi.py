"""Checkout shim: `hypercorn asgi:app` still works; the app is taskapi/ops/asgi.py."""

from taskapi.ops.asgi import app

__all__ = ["app"]
