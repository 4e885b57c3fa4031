"""A permanent SMTP refusal (5xx) of one recipient or one message fails that email at once;
a transient one (4xx) and a refusal of the sender or the login (ops must fix the settings:
every email would fail alike) are retried with backoff, as before."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from taskapi.models import EmailOutbox, EmailStatus
from taskapi.services import outbox
from tests.support.faults import SMTPServer
from tests.support.smtp import SMTPSink


class Picky(SMTPSink):
    """Refuses some recipients for good (550), greylists others (451), and refuses the
    message itself after DATA (554) for others."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("gone"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("grey"):
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if any(rcpt.startswith("spam") for rcpt in envelope.rcpt_tos):
            return "554 5.7.1 message refused"
        return await super().handle_DATA(server, session, envelope)


async def _add(db: Any, settings: Any, key: str, to: str) -> None:
    async with db.transaction() as session:
        await outbox.add_email(session, settings, kind="notice", dedupe_key=key, to=to,
                               template="approved", username=key, role="employee",
                               email="someone@example.test")


async def _deliver_once(db: Any, settings: Any, smtp: SMTPServer) -> Any:
    smtp.start()
    try:
        return await outbox.deliver_due(db, settings)
    finally:
        smtp.stop()


async def test_a_bounce_fails_at_once_a_greylist_is_retried_the_rest_arrive(make_settings, db) -> None:  # type: ignore[no-untyped-def]
    sink = Picky()
    smtp = SMTPServer(sink)
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False)
    await _add(db, settings, "gone", "gone@example.test")
    await _add(db, settings, "grey", "grey@example.test")
    await _add(db, settings, "spam", "spam@example.test")
    await _add(db, settings, "fine", "fine@example.test")
    counts = await _deliver_once(db, settings, smtp)
    async with db.session(write=False) as session:
        rows = {row.dedupe_key: row for row in await session.scalars(select(EmailOutbox))}
    assert counts["sent"] == 1 and counts["failed"] == 2 and counts["retry"] == 1
    assert rows["fine"].status == EmailStatus.SENT
    gone = rows["gone"]
    assert gone.status == EmailStatus.FAILED and gone.attempts == 1
    assert gone.last_error is not None and "550" in gone.last_error
    spam = rows["spam"]
    assert spam.status == EmailStatus.FAILED and spam.attempts == 1
    assert spam.last_error is not None and "554" in spam.last_error
    grey = rows["grey"]
    assert grey.status == EmailStatus.PENDING and grey.attempts == 1
    assert grey.next_attempt_at > grey.created_at  # backed off
    assert [m["To"] for m in sink.messages] == ["fine@example.test"]


async def test_a_refused_sender_is_retried_not_failed(make_settings, db) -> None:  # type: ignore[no-untyped-def]
    class RefusesSender(SMTPSink):
        async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                              mail_options: list[str]) -> str:
            return "550 5.7.1 sender not allowed"

    smtp = SMTPServer(RefusesSender())
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False)
    await _add(db, settings, "a", "a@example.test")
    counts = await _deliver_once(db, settings, smtp)
    assert counts == {"retry": 1}
