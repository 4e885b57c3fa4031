"""ORM tables. Importing this package registers every table on Base.metadata."""

from taskapi.models.account_tokens import PasswordReset, PersonalToken
from taskapi.models.base import Base, UTCDateTime, utcnow
from taskapi.models.comment import TaskComment
from taskapi.models.counts import NO_ASSIGNEE, TaskCount, UserCount
from taskapi.models.due_counts import TaskDueCount
from taskapi.models.email_confirmation import EmailConfirmation
from taskapi.models.event import TaskEvent
from taskapi.models.idempotency import IdempotencyKey
from taskapi.models.outbox import EmailOutbox, EmailStatus
from taskapi.models.report import ReportRequest, ReportStatus, ReportTrigger
from taskapi.models.search import SEARCH_TABLES
from taskapi.models.session import AuthSession
from taskapi.models.task import Task, TaskStatus
from taskapi.models.user import ReportSchedule, Role, User
from taskapi.models.webhook import DeliveryStatus, WebhookDelivery, WebhookEndpoint

__all__ = [
    "NO_ASSIGNEE",
    "SEARCH_TABLES",
    "AuthSession",
    "Base",
    "DeliveryStatus",
    "EmailConfirmation",
    "EmailOutbox",
    "EmailStatus",
    "IdempotencyKey",
    "PasswordReset",
    "PersonalToken",
    "ReportRequest",
    "ReportSchedule",
    "ReportStatus",
    "ReportTrigger",
    "Role",
    "Task",
    "TaskComment",
    "TaskCount",
    "TaskDueCount",
    "TaskEvent",
    "TaskStatus",
    "UTCDateTime",
    "User",
    "UserCount",
    "WebhookDelivery",
    "WebhookEndpoint",
    "utcnow",
]
