"""Task use cases: commands (commands.py), lists (lists.py) and cached reads (reads.py); the
visibility rule they share is in access.py."""

from taskapi.services.tasks.commands import (
    assign_task,
    create_task,
    delete_task,
    set_status,
    update_task,
)
from taskapi.services.tasks.lists import list_tasks
from taskapi.services.tasks.reads import (
    all_spec,
    build_task_entry,
    get_task_cached,
    list_tasks_cached,
    may_see_entry,
    mine_spec,
    task_spec,
)

__all__ = [
    "all_spec",
    "assign_task",
    "build_task_entry",
    "create_task",
    "delete_task",
    "get_task_cached",
    "list_tasks",
    "list_tasks_cached",
    "may_see_entry",
    "mine_spec",
    "set_status",
    "task_spec",
    "update_task",
]
