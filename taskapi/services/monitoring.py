"""Values read at scrape time for /metrics: the job queue, the email outbox and the webhook
delivery backlogs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from arq.connections import ArqRedis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from taskapi.core.db import Database
from taskapi.core.redis_client import QUEUE_NAME
from taskapi.models import EmailStatus
from taskapi.services import webhook_backlog
from taskapi.services.outbox import backlog

log = logging.getLogger("taskapi.metrics")
T = TypeVar("T")
SCRAPE_TIMEOUT = 2.0
# Not `sent`: that count only grows and would cost a scan of the whole table per scrape.
BACKLOG = (EmailStatus.PENDING, EmailStatus.SENDING, EmailStatus.FAILED)


async def _attempt(what: str, work: Awaitable[T]) -> T | None:
    try:
        return await asyncio.wait_for(work, SCRAPE_TIMEOUT)
    except Exception as error:  # a source down must not fail the whole scrape
        log.warning("metrics: %s unavailable: %r", what, error)
        return None


async def scrape(db: Database, redis: ArqRedis) -> list[Metric]:
    """Queue length and outbox rows by status, plus whether each source answered; a source
    that is down leaves its values out (never a made-up zero)."""
    queued, emails, hooks = await asyncio.gather(
        _attempt("job queue length", redis.zcard(QUEUE_NAME)),
        _attempt("email outbox counts", backlog(db, BACKLOG)),
        _attempt("webhook delivery counts", webhook_backlog.backlog(db)),
    )
    up = GaugeMetricFamily("taskapi_metrics_source_up",
                           "Whether the source of the scrape-time values answered.",
                           labels=["source"])
    up.add_metric(["redis"], float(queued is not None))
    up.add_metric(["database"], float(emails is not None))
    families: list[Metric] = [up]
    if queued is not None:
        families.append(GaugeMetricFamily(
            "taskapi_jobs_queued", "Jobs in the ARQ queue (waiting, deferred or running).",
            value=int(queued)))
    if emails is not None:
        outbox = GaugeMetricFamily("taskapi_email_outbox",
                                   "Emails not yet sent, by status (failed: gave up).",
                                   labels=["status"])
        for status in BACKLOG:
            outbox.add_metric([status.value], emails.get(status.value, 0))
        families.append(outbox)
    if hooks is not None:
        deliveries = GaugeMetricFamily(
            "taskapi_webhook_deliveries",
            "Webhook deliveries not yet delivered, by status (failed: gave up).",
            labels=["status"])
        for status, count in hooks.items():
            deliveries.add_metric([status], count)
        families.append(deliveries)
    return families
