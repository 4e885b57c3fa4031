"""ORM tables. Importing this package registers every table on Base.metadata."""

from .base import Base, UTCDateTime, utcnow
from .outbox import EmailOutbox, EmailStatus
from .report import ReportRequest, ReportStatus
from .session import AuthSession
from .task import Task, TaskStatus
from .user import Role, User

__all__ = [
    "AuthSession",
    "Base",
    "EmailOutbox",
    "EmailStatus",
    "ReportRequest",
    "ReportStatus",
    "Role",
    "Task",
    "TaskStatus",
    "UTCDateTime",
    "User",
    "utcnow",
]
