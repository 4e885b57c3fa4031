"""Pydantic request/response models per resource."""
