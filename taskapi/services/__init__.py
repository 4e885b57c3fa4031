"""Use cases with no Quart imports, shared by the API and the worker jobs."""
