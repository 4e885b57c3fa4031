"""ORM tables. Importing this package registers every table on Base.metadata."""

from .base import Base, UTCDateTime, utcnow
from .task import Task, TaskStatus
from .user import Role, User

__all__ = ["Base", "Role", "Task", "TaskStatus", "UTCDateTime", "User", "utcnow"]
