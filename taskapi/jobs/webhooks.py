"""Webhook delivery in the worker: a pump that sweeps every WEBHOOK_POLL_INTERVAL, and the
same sweep as a job (`taskapi jobs run deliver_webhooks`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from taskapi.services import webhook_delivery
from taskapi.services.event_retention import prune_deliveries
from taskapi.services.webhook_send import new_client

log = logging.getLogger("taskapi.webhooks")


@contextlib.asynccontextmanager
async def client_for(ctx: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    """The worker's shared HTTP client, or a short-lived one outside the worker."""
    shared = ctx.get("webhook_client")
    if shared is not None:
        yield shared
        return
    async with new_client(ctx["settings"]) as own:
        yield own


async def deliver_webhooks(ctx: dict[str, Any]) -> str:
    """One sweep: new events become deliveries, then everything due is sent."""
    async with client_for(ctx) as client:
        outcome = await webhook_delivery.sweep(ctx["db"], ctx["settings"], client)
    return f"webhooks {dict(outcome) or 'nothing due'}"


async def prune_webhook_deliveries(ctx: dict[str, Any]) -> int:
    """Delete finished (delivered, failed) deliveries older than EVENTS_RETENTION."""
    return await prune_deliveries(ctx["db"], ctx["settings"].events_retention)


async def webhook_pump(ctx: dict[str, Any]) -> None:
    """Sweep, then wait WEBHOOK_POLL_INTERVAL, until cancelled (the worker stopping). An
    error (the database away) is logged once per outage and the next sweep tries again."""
    failing = False
    while True:
        try:
            async with client_for(ctx) as client:
                await webhook_delivery.sweep(ctx["db"], ctx["settings"], client)
            if failing:
                log.warning("webhook delivery resumed")
            failing = False
        except Exception as error:
            if not failing:
                log.warning("webhook sweep failed (%r): retrying every %.1f s", error,
                            ctx["settings"].webhook_poll_interval)
            failing = True
        await asyncio.sleep(ctx["settings"].webhook_poll_interval)
