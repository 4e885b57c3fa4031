"""Summary reports, emailed to the requester."""

from __future__ import annotations

from quart import Blueprint, url_for
from quart_schema import document_request, tag, validate_response

from taskapi.http.current import db_session, runtime
from taskapi.http.deps import actor, require_role
from taskapi.http.openapi import optional_body as documented_optional
from taskapi.http.responses import optional_body
from taskapi.http.safe_writes import idempotent
from taskapi.models import Role
from taskapi.schemas.reports import ReportCreate, ReportOut
from taskapi.services import reports

bp = Blueprint("reports", __name__)
tag_ = tag(["reports"])


@bp.post("/reports")
@tag_
@require_role(Role.ADMIN, Role.MANAGER)
@document_request(ReportCreate)
@idempotent(lambda requested: _accepted(requested[0]))
@documented_optional
@validate_response(ReportOut, 202)
async def request_report() -> tuple[ReportOut, int, dict[str, str]]:
    """Ask for a task summary by email (202); the same ask within a minute returns that job.

    The body is optional: no body means the last 7 days.
    """
    data = await optional_body(ReportCreate)
    report, _ = await reports.request_report(db_session(), runtime(), actor(), data)
    return _accepted(report)


def _accepted(report: ReportOut) -> tuple[ReportOut, int, dict[str, str]]:
    return report, 202, {"Location": url_for(".report_status", job_id=report.job_id)}


@bp.get("/reports/<job:job_id>")
@tag_
@require_role(Role.ADMIN, Role.MANAGER)
@validate_response(ReportOut)
async def report_status(job_id: str) -> ReportOut:
    """A report's status: queued, in_progress, complete or failed (requester or admin)."""
    return await reports.get_report(db_session(), actor(), job_id)
