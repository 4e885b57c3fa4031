"""taskapi: an async task-management API on Quart."""

__version__ = "0.1.0"
