"""Checkout shim: `import settings` still works; the settings live in taskapi/config.py."""

from taskapi.config import (
    MIN_SECRET_LENGTH,
    ConfigError,
    Settings,
    load_settings,
    parse_rate,
)

__all__ = ["MIN_SECRET_LENGTH", "ConfigError", "Settings", "load_settings", "parse_rate"]
