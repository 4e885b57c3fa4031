"""The email outbox: record before sending, claim, send, mark — effectively once.

At-least-once delivery plus dedupe: a row is inserted (unique dedupe key) in the same
transaction as the change it reports, and delivered after commit. A sender claims rows by
moving them from pending to sending under its own token in one UPDATE, so two workers never
send the same row. A failure puts the row back to pending with a backoff, up to MAX_ATTEMPTS,
then marks it failed; a bounce (5xx for the recipient or the message) fails it at once. A
claim older than EMAIL_CLAIM_TIMEOUT (the sender died) is claimable again. Each row is marked
sent as soon as the SMTP server accepted it, so the one window left is a crash between that
acceptance and that commit (at most the messages in flight, one per SMTP connection) — those
messages are sent again.

Each row's outcome is its own: a row that cannot be built into a message (a header the email
library refuses) fails at once, an SMTP error is retried, an error marking one row leaves it
to the batch's final write; nothing one row raises reaches the others or the batch. A row
whose recipient's state no longer holds (`outbox_checks`) is cancelled when it is claimed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi import mail
from taskapi.config import Settings
from taskapi.core.db import Database, insert_ignoring
from taskapi.core.shielded import run_to_end
from taskapi.models import EmailOutbox, EmailStatus, ReportRequest, ReportStatus, utcnow
from taskapi.services.outbox_checks import scrubbed_bodies, stale

log = logging.getLogger("taskapi.outbox")

MAX_ATTEMPTS = 6
# Rows are claimed a chunk at a time, so a sender that dies strands at most one chunk
# (until the claim times out); everything after it stays pending for the next run.
CHUNK = 50
# A row's outcome: ("sent", None), ("retry", error) or ("failed", error) — failed at once.
Result = tuple[str, str | None]


def backoff(attempts: int, base: float = 30.0) -> timedelta:
    """30 s, 1 min, 2 min, 4 min … (with the default base) capped at an hour."""
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 3600))


def insert_ignore(dialect: str, rows: Sequence[dict[str, Any]]) -> Any:
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING, for SQLite and PostgreSQL."""
    return insert_ignoring(dialect, EmailOutbox, rows, ["dedupe_key"])


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
                 limit: int) -> tuple[str, list[EmailOutbox], int]:
    """Claim due rows under a new token, then cancel those whose recipient's state no longer
    holds: (token, the rows to send, how many were cancelled). The check reads after the
    claim has committed, so it sees every change committed before the claim; the write
    transaction stays one UPDATE (SQLite has one writer)."""
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
    async with db.session(write=False) as session:
        rows = list((await session.scalars(
            select(EmailOutbox).where(EmailOutbox.claim_token == token).order_by(EmailOutbox.id)
        )).all())
        reasons = await stale(session, rows) if rows else {}
    if reasons:
        async with db.transaction(write=True) as session:
            for row in rows:
                if row.id in reasons:
                    log.info("email %s to %r cancelled: %s", row.dedupe_key, row.to_address,
                             reasons[row.id])
                    await _finish(session, token, row, EmailStatus.CANCELLED, reasons[row.id])
    return token, [row for row in rows if row.id not in reasons], len(reasons)


async def _finish(session: AsyncSession, token: str, row: EmailOutbox, status: EmailStatus,
                  error: str, retry_at: datetime | None = None) -> None:
    """End a claimed row (failed or cancelled; pending again if `retry_at`), and its report
    with it when it gave up."""
    await session.execute(
        update(EmailOutbox).where(EmailOutbox.id == row.id, EmailOutbox.claim_token == token)
        .values(status=status, claim_token=None, last_error=error,
                **({"next_attempt_at": retry_at} if retry_at else {}),
                **(scrubbed_bodies() if status == EmailStatus.CANCELLED else {}))
        .execution_options(synchronize_session=False))
    if row.kind == "report" and status != EmailStatus.PENDING:
        prefix = "cancelled: " if status == EmailStatus.CANCELLED else ""
        await _settle_report(session, row, ReportStatus.FAILED, prefix + error)


async def _mark_sent(db: Database, token: str, row_ids: Sequence[int]) -> None:
    async with db.transaction(write=True) as session:
        await _sent(session, token, row_ids)


async def _sent(session: AsyncSession, token: str, row_ids: Sequence[int]) -> None:
    await session.execute(
        update(EmailOutbox).where(EmailOutbox.id.in_(row_ids), EmailOutbox.claim_token == token)
        .values(status=EmailStatus.SENT, sent_at=utcnow(), claim_token=None, last_error=None,
                **scrubbed_bodies())
        .execution_options(synchronize_session=False))


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


async def deliver(db: Database, settings: Settings, mailer: mail.Mailer, *,
                  keys: Sequence[str] | None = None, now: datetime | None = None,
                  limit: int = CHUNK) -> Counter[str]:
    """Claim and send due rows: the given keys (chunk by chunk), or up to `limit` of any.
    Returns counts by outcome: sent, retry, failed, cancelled (and interrupted)."""
    now = now or utcnow()
    if keys is not None and len(keys) > CHUNK:
        total: Counter[str] = Counter()
        for start in range(0, len(keys), CHUNK):
            total.update(await deliver(db, settings, mailer, keys=keys[start:start + CHUNK],
                                       now=now))
        return total
    token, rows, cancelled = await _claim(db, settings, now, keys, limit)
    outcome: Counter[str] = Counter({"cancelled": cancelled} if cancelled else {})
    if not rows:
        return outcome

    results: dict[int, Result] = {}

    async def send(row: EmailOutbox) -> None:
        try:
            message = mail.build_message(settings, to=row.to_address, subject=row.subject,
                                         text=row.body_text, html=row.body_html,
                                         message_id=row.message_id)
        except Exception as error:  # the row itself is bad: no retry can fix it
            results[row.id] = ("failed", _error(error))
            return
        try:
            await mailer.send(message, row.kind)
        except Exception as error:  # a bounce fails at once; the rest is retried with backoff
            results[row.id] = ("failed" if mail.refused_for_good(error) else "retry",
                               _error(error))
            return
        results[row.id] = ("sent", None)  # accepted: recorded even if the mark below fails
        # Marked at once, not with the rest of the chunk: a sender killed mid-chunk would
        # otherwise leave every message it had already sent to be sent again.
        try:
            await _mark_sent(db, token, [row.id])
        except Exception as error:  # still claimed by us: _record marks it with the rest
            log.warning("email %s sent, its mark deferred: %s", row.dedupe_key, _error(error))

    try:
        # return_exceptions: whatever one send raises, the gather ends only once every send
        # has, so _record never releases a row whose message is still on its way.
        raised = await asyncio.gather(*(send(row) for row in rows), return_exceptions=True)
        for row, error in zip(rows, raised, strict=True):
            if isinstance(error, BaseException) and row.id not in results:
                results[row.id] = ("retry", _error(error))  # not the batch's interruption
    finally:
        # Also when cancelled (a stopping worker past its grace period): mark what the server
        # accepted, so no rerun sends it again, and release the rest now rather than leaving
        # it claimed until EMAIL_CLAIM_TIMEOUT has passed. Shielded: a second cancel must not
        # cut the UPDATE.
        outcome.update(await run_to_end(_record(db, settings, token, rows, results, now),
                                    "recording the outbox's sends"))
    return outcome


async def _record(db: Database, settings: Settings, token: str, rows: Sequence[EmailOutbox],
                  results: dict[int, Result], now: datetime) -> Counter[str]:
    """Write each claimed row's outcome: sent, retry later, failed for good, or (no result:
    interrupted before the server answered) pending again, the attempt not counted."""
    by_state: dict[str, list[EmailOutbox]] = defaultdict(list)
    for row in rows:
        by_state[results[row.id][0] if row.id in results else "interrupted"].append(row)
    outcome: Counter[str] = Counter()
    async with db.transaction(write=True) as session:
        if sent := by_state["sent"]:
            await _sent(session, token, [row.id for row in sent])  # those not marked yet
            outcome["sent"] = len(sent)
            for row in sent:
                if row.kind == "report":
                    await _settle_report(session, row, ReportStatus.COMPLETE, None)
        if interrupted := by_state["interrupted"]:
            await session.execute(
                update(EmailOutbox).where(EmailOutbox.id.in_([row.id for row in interrupted]),
                                          EmailOutbox.claim_token == token)
                .values(status=EmailStatus.PENDING, attempts=EmailOutbox.attempts - 1,
                        next_attempt_at=now, claim_token=None)
                .execution_options(synchronize_session=False))
            outcome["interrupted"] = len(interrupted)
        for row in by_state["retry"] + by_state["failed"]:
            state, error = results[row.id]
            final = state == "failed" or row.attempts >= MAX_ATTEMPTS
            outcome["failed" if final else "retry"] += 1
            log.warning("email %s to %r failed (attempt %d%s): %s", row.dedupe_key,
                        row.to_address, row.attempts, ", giving up" if final else "", error)
            retry_at = None if final else now + backoff(row.attempts, settings.email_retry_base)
            await _finish(session, token, row, EmailStatus.FAILED if final
                          else EmailStatus.PENDING, error or "", retry_at)
    return outcome


async def _settle_report(session: AsyncSession, row: EmailOutbox, status: ReportStatus,
                         error: str | None) -> None:
    """A report is complete when its email is sent, failed when the email gave up or was
    cancelled."""
    report_id = row.dedupe_key.removeprefix("report:")
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


async def given_up(db: Database, limit: int = 10) -> list[tuple[str, str, str, str]]:
    """The most recent emails that will not be sent, failed or cancelled: (status, dedupe
    key, recipient, last error or reason)."""
    async with db.session(write=False) as session:
        rows = await session.execute(
            select(EmailOutbox.status, EmailOutbox.dedupe_key, EmailOutbox.to_address,
                   EmailOutbox.last_error)
            .where(EmailOutbox.status.in_([EmailStatus.FAILED, EmailStatus.CANCELLED]))
            .order_by(EmailOutbox.id.desc()).limit(limit))
        return [(EmailStatus(status).value, key, to, error or "")
                for status, key, to, error in rows]
