"""Outgoing webhooks: endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from taskapi.schemas.activity import PageQuery
from taskapi.schemas.common import component
from taskapi.schemas.users import Strict

EVENT_TYPES = ("task.created", "task.updated", "task.status_changed", "task.assigned",
               "task.deleted", "comment.created")
EventType = Literal["task.created", "task.updated", "task.status_changed", "task.assigned",
                    "task.deleted", "comment.created", "*"]
Url = Annotated[str, Field(min_length=1, max_length=2048,
                           description="http or https; public addresses only (unless "
                                       "WEBHOOK_ALLOW_PRIVATE).")]
Events = Annotated[list[EventType], Field(
    min_length=1, max_length=len(EVENT_TYPES),
    description='Event types, or `["*"]` for all: ' + ", ".join(EVENT_TYPES) + ".")]
Description = Annotated[str, Field(max_length=500)]


def _one_way(events: list[str]) -> list[str]:
    events = list(dict.fromkeys(events))  # each once, in the order sent
    if "*" in events and len(events) > 1:
        raise ValueError('"*" stands alone: it already means every event type')
    return events


class WebhookIn(Strict):
    model_config = component("NewWebhook", {
        "url": "https://hooks.example.com/taskapi", "events": ["task.created", "task.assigned"],
        "description": "Team chat", "enabled": True})

    url: Url
    events: Events
    description: Description = ""
    enabled: bool = True

    _events = field_validator("events")(_one_way)


class WebhookUpdate(Strict):
    """Partial update: only the fields sent change (none may be null)."""

    model_config = component("WebhookUpdate", {"events": ["*"], "enabled": False})

    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _one_way(value)

    @model_validator(mode="after")
    def _no_nulls(self) -> WebhookUpdate:
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, **component("Webhook", {
        "id": 3, "url": "https://hooks.example.com/taskapi",
        "events": ["task.created", "task.assigned"], "description": "Team chat",
        "enabled": True, "disabled_reason": None, "created_at": "2026-12-03T09:00:00Z",
        "updated_at": "2026-12-03T09:00:00Z", "previous_secret_until": None}))

    id: int
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the service disabled it (the receiver answered 410).")
    created_at: datetime
    updated_at: datetime
    previous_secret_until: datetime | None = Field(
        description="After a rotation: until when the previous secret still signs too.")


class WebhookSecret(WebhookOut):
    """The endpoint with its signing secret: only in the answer that creates or rotates it."""

    model_config = ConfigDict(from_attributes=True, **component("WebhookWithSecret", {
        "id": 3, "url": "https://hooks.example.com/taskapi", "events": ["*"],
        "description": "Team chat", "enabled": True, "disabled_reason": None,
        "created_at": "2026-12-03T09:00:00Z", "updated_at": "2026-12-03T09:00:00Z",
        "previous_secret_until": None,
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/ZzuVwzjC9Q="}))

    secret: str = Field(description="`whsec_` + base64 of 32 bytes; shown only here.")


class DeliveryQuery(PageQuery):
    status: Literal["pending", "sending", "delivered", "failed"] | None = None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, **component("WebhookDelivery", {
        "id": 41, "webhook_id": 3, "event_id": 1207, "event_type": "task.assigned",
        "status": "pending", "attempts": 2, "last_status_code": 503,
        "last_error": "HTTP 503", "latency_ms": 84, "next_attempt_at": "2026-12-03T09:05:10Z",
        "created_at": "2026-12-03T09:00:04Z", "delivered_at": None}))

    id: int
    webhook_id: int = Field(validation_alias=AliasChoices("endpoint_id", "webhook_id"))
    event_id: int = Field(description="Also the `webhook-id` header: stable across retries.")
    event_type: str
    status: str = Field(description="pending, sending, delivered or failed (gave up).")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    latency_ms: int | None = Field(description="The last attempt's, in milliseconds.")
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
