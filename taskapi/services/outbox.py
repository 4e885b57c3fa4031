"""The email outbox: record before sending, claim, send, mark — effectively once.

At-least-once delivery plus dedupe: a row is inserted (unique dedupe key) in the same
transaction as the change it reports, and delivered after commit. A sender claims rows by
moving them from pending to sending under its own token in one UPDATE, so two workers never
send the same row. A failure puts the row back to pending with a backoff, up to MAX_ATTEMPTS,
then marks it failed. A claim older than EMAIL_CLAIM_TIMEOUT (the sender died) is claimable
again. Each row is marked sent as soon as the SMTP server accepted it, so the one window left
is a crash between that acceptance and that commit (at most the messages in flight, one per
SMTP connection) — those messages are sent again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi import mail
from taskapi.config import Settings
from taskapi.core.db import Database
from taskapi.models import EmailOutbox, EmailStatus, ReportRequest, ReportStatus, utcnow

log = logging.getLogger("taskapi.outbox")

MAX_ATTEMPTS = 6
# Rows are claimed a chunk at a time, so a sender that dies strands at most one chunk
# (until the claim times out); everything after it stays pending for the next run.
CHUNK = 50


def backoff(attempts: int, base: float = 30.0) -> timedelta:
    """30 s, 1 min, 2 min, 4 min … (with the default base) capped at an hour."""
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 3600))


def insert_ignore(dialect: str, rows: Sequence[dict[str, Any]]) -> Any:
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING, for SQLite and PostgreSQL."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(EmailOutbox).values(list(rows)).on_conflict_do_nothing(
        index_elements=["dedupe_key"]
    )


def email_row(settings: Settings, *, kind: str, dedupe_key: str, to: str, template: str,
              user_id: int | None = None, now: datetime | None = None,
              **context: Any) -> dict[str, Any]:
    rendered = mail.render(template, **context)
    now = now or utcnow()
    return {
        "dedupe_key": dedupe_key, "kind": kind, "user_id": user_id, "to_address": to,
        "subject": rendered.subject[:300], "body_text": rendered.text,
        "body_html": rendered.html, "message_id": mail.new_message_id(settings),
        "status": EmailStatus.PENDING, "attempts": 0, "next_attempt_at": now,
        "created_at": now,
    }


async def add_email(session: AsyncSession, settings: Settings, **fields: Any) -> str:
    """Record an email in the caller's transaction; returns its dedupe key.

    A second call with the same key changes nothing (the first message stands).
    """
    row = email_row(settings, **fields)
    await session.execute(insert_ignore(session.get_bind().dialect.name, [row]))
    return str(row["dedupe_key"])


def _claimable(now: datetime, claim_timeout: timedelta) -> ColumnElement[bool]:
    return or_(
        and_(EmailOutbox.status == EmailStatus.PENDING, EmailOutbox.next_attempt_at <= now),
        and_(EmailOutbox.status == EmailStatus.SENDING,
             EmailOutbox.claimed_at < now - claim_timeout),
    )


async def _claim(db: Database, settings: Settings, now: datetime, keys: Sequence[str] | None,
                 limit: int) -> str:
    token = uuid.uuid4().hex
    condition = _claimable(now, timedelta(seconds=settings.email_claim_timeout))
    if keys is not None:
        condition = and_(condition, EmailOutbox.dedupe_key.in_(keys))
    else:
        due = select(EmailOutbox.id).where(condition).order_by(EmailOutbox.id).limit(limit)
        condition = and_(condition, EmailOutbox.id.in_(due.scalar_subquery()))
    async with db.transaction(write=True) as session:
        await session.execute(
            update(EmailOutbox).where(condition).values(
                status=EmailStatus.SENDING, claim_token=token, claimed_at=now,
                attempts=EmailOutbox.attempts + 1,
            ).execution_options(synchronize_session=False)
        )
    return token


async def deliver(db: Database, settings: Settings, mailer: mail.Mailer, *,
                  keys: Sequence[str] | None = None, now: datetime | None = None,
                  limit: int = CHUNK) -> Counter[str]:
    """Claim and send due rows: the given keys (chunk by chunk), or up to `limit` of any.
    Returns counts by outcome: sent, retry, failed."""
    now = now or utcnow()
    if keys is not None and len(keys) > CHUNK:
        total: Counter[str] = Counter()
        for start in range(0, len(keys), CHUNK):
            total.update(await deliver(db, settings, mailer, keys=keys[start:start + CHUNK],
                                       now=now))
        return total
    token = await _claim(db, settings, now, keys, limit)
    async with db.session(write=False) as session:
        rows = (await session.scalars(
            select(EmailOutbox).where(EmailOutbox.claim_token == token).order_by(EmailOutbox.id)
        )).all()
    if not rows:
        return Counter()

    results: dict[int, str | None] = {}  # row id -> None (sent) or the error

    async def send(row: EmailOutbox) -> None:
        message = mail.build_message(settings, to=row.to_address, subject=row.subject,
                                     text=row.body_text, html=row.body_html,
                                     message_id=row.message_id)
        try:
            await mailer.send(message)
        except Exception as error:  # any SMTP/network failure: retried with backoff
            results[row.id] = f"{type(error).__name__}: {error}"[:1000]
            return
        results[row.id] = None  # accepted: recorded even if the mark below is interrupted
        # Marked at once, not with the rest of the chunk: a sender killed mid-chunk would
        # otherwise leave every message it had already sent to be sent again.
        async with db.transaction(write=True) as session:
            await session.execute(
                update(EmailOutbox).where(EmailOutbox.id == row.id,
                                          EmailOutbox.claim_token == token)
                .values(status=EmailStatus.SENT, sent_at=utcnow(), claim_token=None,
                        last_error=None)
                .execution_options(synchronize_session=False))

    try:
        await asyncio.gather(*(send(row) for row in rows))
    finally:
        # Also when cancelled (a stopping worker past its grace period): mark what the server
        # accepted, so no rerun sends it again, and release the rest now rather than leaving
        # it claimed until EMAIL_CLAIM_TIMEOUT has passed. Shielded: a second cancel must not
        # cut the UPDATE.
        outcome = await asyncio.shield(_record(db, settings, token, rows, results, now))
    return outcome


async def _record(db: Database, settings: Settings, token: str, rows: Sequence[EmailOutbox],
                  results: dict[int, str | None], now: datetime) -> Counter[str]:
    """Write each claimed row's outcome: sent, retry later, failed for good, or (no result:
    interrupted before the server answered) pending again, the attempt not counted."""
    outcome: Counter[str] = Counter()
    retry_base = settings.email_retry_base
    async with db.transaction(write=True) as session:
        sent = [row.id for row in rows if row.id in results and results[row.id] is None]
        if sent:
            await session.execute(
                update(EmailOutbox).where(EmailOutbox.id.in_(sent),
                                          EmailOutbox.claim_token == token)
                .values(status=EmailStatus.SENT, sent_at=utcnow(), claim_token=None,
                        last_error=None)
                .execution_options(synchronize_session=False))  # those not marked yet
            outcome["sent"] = len(sent)
        interrupted = [row.id for row in rows if row.id not in results]
        if interrupted:
            await session.execute(
                update(EmailOutbox).where(EmailOutbox.id.in_(interrupted),
                                          EmailOutbox.claim_token == token)
                .values(status=EmailStatus.PENDING, attempts=EmailOutbox.attempts - 1,
                        next_attempt_at=now, claim_token=None)
                .execution_options(synchronize_session=False))
            outcome["interrupted"] = len(interrupted)
        for row in rows:
            error = results.get(row.id)
            if error is None:
                continue
            final = row.attempts >= MAX_ATTEMPTS
            outcome["failed" if final else "retry"] += 1
            log.warning("email %s to %s failed (attempt %d%s): %s", row.dedupe_key,
                        row.to_address, row.attempts, ", giving up" if final else "", error)
            await session.execute(
                update(EmailOutbox).where(EmailOutbox.id == row.id,
                                          EmailOutbox.claim_token == token)
                .values(status=EmailStatus.FAILED if final else EmailStatus.PENDING,
                        next_attempt_at=now + backoff(row.attempts, retry_base),
                        claim_token=None,
                        last_error=error)
                .execution_options(synchronize_session=False))
        await _settle_reports(session, rows, results)
    return outcome


async def _settle_reports(session: AsyncSession, rows: Sequence[EmailOutbox],
                          results: dict[int, str | None]) -> None:
    """A report is complete when its email is sent, failed when the email gave up."""
    for row in rows:
        if row.kind != "report" or row.id not in results:
            continue
        report_id = row.dedupe_key.removeprefix("report:")
        error = results[row.id]
        if error is None:
            status = ReportStatus.COMPLETE
        elif row.attempts >= MAX_ATTEMPTS:
            status = ReportStatus.FAILED
        else:
            continue
        await session.execute(update(ReportRequest).where(ReportRequest.id == report_id).values(
            status=status, finished_at=utcnow(), error=error))


async def deliver_due(db: Database, settings: Settings, *, now: datetime | None = None,
                      connections: int = 4) -> Counter[str]:
    """Everything due, in batches (the sweeper): retries, rows whose enqueue was lost while
    Redis was down, and rows left claimed by a worker that died."""
    total: Counter[str] = Counter()
    async with mail.Mailer(settings, connections) as mailer:
        while True:
            outcome = await deliver(db, settings, mailer, now=now)
            total.update(outcome)
            if sum(outcome.values()) < CHUNK:
                return total


async def backlog(db: Database,
                  statuses: Sequence[EmailStatus] | None = None) -> dict[str, int]:
    """Rows per status (ops: `taskapi jobs list`), or only of `statuses` (metrics: leaving
    out `sent`, which grows forever, keeps the count on the status index's short ranges)."""
    query = select(EmailOutbox.status, func.count(EmailOutbox.id)).group_by(EmailOutbox.status)
    if statuses is not None:
        query = query.where(EmailOutbox.status.in_(statuses))
    async with db.session(write=False) as session:
        rows = await session.execute(query)
        return {EmailStatus(status).value: int(count) for status, count in rows}


async def failed(db: Database, limit: int = 10) -> list[tuple[str, str, str]]:
    """The most recent emails that gave up: (dedupe key, recipient, last error)."""
    async with db.session(write=False) as session:
        rows = await session.execute(
            select(EmailOutbox.dedupe_key, EmailOutbox.to_address, EmailOutbox.last_error)
            .where(EmailOutbox.status == EmailStatus.FAILED)
            .order_by(EmailOutbox.id.desc()).limit(limit))
        return [(key, to, error or "") for key, to, error in rows]
