"""Outgoing webhooks (admins): endpoints, secret rotation, deliveries."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_querystring, tag, validate_request, validate_response

from taskapi.http.current import db_session, runtime
from taskapi.http.deps import actor, require_role
from taskapi.http.headers import no_store
from taskapi.http.openapi import no_content, problems
from taskapi.http.responses import ListResponse, dump_list, page_headers, parse_query, whole_list
from taskapi.models import Role
from taskapi.schemas.webhooks import (
    DeliveryOut,
    DeliveryQuery,
    WebhookIn,
    WebhookOut,
    WebhookSecret,
    WebhookUpdate,
)
from taskapi.services import webhooks

bp = Blueprint("webhooks", __name__)
tag_ = tag(["webhooks"])
ADMIN = Role.ADMIN


@bp.post("/webhooks")
@tag_
@require_role(ADMIN)
@no_store
@validate_request(WebhookIn)
@validate_response(WebhookSecret, 201)
async def create_webhook(data: WebhookIn) -> tuple[WebhookSecret, int, dict[str, str]]:
    """Register an endpoint; the answer holds its signing `secret`, shown only this once.
    It receives the events recorded from now on, signed per Standard Webhooks."""
    created = await webhooks.create(db_session(), runtime().settings, actor(), data)
    return created, 201, {"Location": f"/webhooks/{created.id}"}


@bp.get("/webhooks")
@tag_
@require_role(ADMIN)
@validate_response(list[WebhookOut])
async def list_webhooks() -> ListResponse:
    """Every endpoint, by id (secrets are never shown)."""
    return whole_list(await webhooks.list_all(db_session(), actor()))


@bp.get("/webhooks/<int:webhook_id>")
@tag_
@require_role(ADMIN)
@validate_response(WebhookOut)
async def get_webhook(webhook_id: int) -> WebhookOut:
    """One endpoint."""
    return await webhooks.get(db_session(), actor(), webhook_id)


@bp.put("/webhooks/<int:webhook_id>")
@tag_
@require_role(ADMIN)
@validate_request(WebhookUpdate)
@validate_response(WebhookOut)
async def update_webhook(webhook_id: int, data: WebhookUpdate) -> WebhookOut:
    """Change url, events, description or enabled (only the fields sent). Enabling it again
    starts from now: events recorded while it was disabled are not sent."""
    return await webhooks.change(db_session(), runtime().settings, actor(), webhook_id, data)


@bp.delete("/webhooks/<int:webhook_id>")
@tag_
@require_role(ADMIN)
@no_content
async def delete_webhook(webhook_id: int) -> tuple[str, int]:
    """Delete the endpoint and its deliveries."""
    await webhooks.delete(db_session(), actor(), webhook_id)
    return "", 204


@bp.post("/webhooks/<int:webhook_id>/rotate")
@tag_
@require_role(ADMIN)
@no_store
@validate_response(WebhookSecret)
async def rotate_secret(webhook_id: int) -> WebhookSecret:
    """A new signing secret (in the answer, this once). For 24 hours the previous one signs
    too: `webhook-signature` carries both, space separated, so receivers can switch over."""
    return await webhooks.rotate(db_session(), actor(), webhook_id)


@bp.get("/webhooks/<int:webhook_id>/deliveries")
@tag_
@require_role(ADMIN)
@document_querystring(DeliveryQuery)
@validate_response(list[DeliveryOut])
async def list_deliveries(webhook_id: int) -> ListResponse:
    """The endpoint's deliveries, newest event first (filter: status); keyset pages via
    `Link` rel=next."""
    page = await webhooks.deliveries(db_session(), actor(), webhook_id,
                                     parse_query(DeliveryQuery))
    return dump_list(page.items), 200, page_headers(page)  # type: ignore[arg-type]


@bp.post("/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver")
@tag_
@require_role(ADMIN)
@validate_response(DeliveryOut, 202)
@problems(409)
async def redeliver(webhook_id: int, delivery_id: int) -> tuple[DeliveryOut, int]:
    """Send a delivery now, with a fresh retry schedule (failed, delivered, or pending
    without waiting for its next attempt); 409 while a worker is sending it."""
    return await webhooks.redeliver(db_session(), actor(), webhook_id, delivery_id), 202
