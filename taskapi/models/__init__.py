"""ORM tables. Importing this package registers every table on Base.metadata."""

from .base import Base, UTCDateTime, utcnow
from .session import AuthSession
from .task import Task, TaskStatus
from .user import Role, User

__all__ = ["AuthSession", "Base", "Role", "Task", "TaskStatus", "UTCDateTime", "User", "utcnow"]
