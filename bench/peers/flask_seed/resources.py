"""The tutorial's Flask-RESTful resources for the routes bench/compare.py drives, with its
`role_required` decorator (chapter 4: the user is loaded from the database on every request)
and its `cache_response` decorator (chapter 5: JSON in Redis under `cache:<path>`, SETEX with
a timeout).

One change to the tutorial's cache: its key is the path alone, so every employee would be
served the first employee's `/tasks/mine`. The key here adds the user id, and a status change
deletes its owner's key (the tutorial is silent; without it an employee would not see their
own change for the whole timeout).
"""

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from extensions import db, redis_client
from flask import g, request
from flask_jwt_extended import create_access_token, get_jwt_identity, jwt_required
from flask_restful import Resource, abort
from models import Task, User
from sqlalchemy import func
from werkzeug.security import check_password_hash

CACHE_PREFIX = os.environ.get("CACHE_PREFIX", "")
CACHE_TIMEOUT = int(os.environ.get("CACHE_TIMEOUT", "120"))
STATUSES = ("pending", "in-progress", "completed")


def role_required(roles: list[str]) -> Callable[..., Any]:
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        @jwt_required()
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = db.session.get(User, int(get_jwt_identity()))
            if user is None or not user.approved or user.role not in roles:
                return {"error": "Access denied"}, 403
            g.current_user = user
            return fn(*args, **kwargs)
        return wrapper
    return decorator


def cache_key(path: str, user_id: int) -> str:
    return f"{CACHE_PREFIX}cache:{path}:{user_id}"


def cache_response(timeout: int) -> Callable[..., Any]:
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = cache_key(request.path, g.current_user.id)
            cached_data = redis_client.get(key)
            if cached_data:
                return json.loads(cached_data)
            data = fn(*args, **kwargs)
            redis_client.setex(key, timeout, json.dumps(data))
            return data
        return wrapper
    return decorator


class Login(Resource):
    def post(self) -> Any:
        data = request.get_json(silent=True) or {}
        user = User.query.filter_by(email=data.get("email")).first()
        if not user or not check_password_hash(user.password, str(data.get("password"))):
            return {"error": "Invalid credentials"}, 401
        if not user.approved:
            return {"error": "Account awaiting approval"}, 403
        token = create_access_token(identity=str(user.id),
                                    additional_claims={"username": user.username,
                                                       "role": user.role})
        return {"access_token": token}, 200


class MyTasks(Resource):
    @role_required(["employee", "manager", "admin"])
    @cache_response(timeout=CACHE_TIMEOUT)
    def get(self) -> Any:
        tasks = (Task.query.filter_by(assigned_user_id=g.current_user.id)
                 .order_by(Task.id).limit(50).all())
        return [t.to_dict() for t in tasks]


def visible_task(task_id: int) -> Task:
    task = db.session.get(Task, task_id)
    user = g.current_user
    if task is None or (user.role == "employee" and task.assigned_user_id != user.id):
        abort(404, message="Task not found")
    return task


class TaskDetail(Resource):
    @role_required(["employee", "manager", "admin"])
    def get(self, task_id: int) -> Any:
        return visible_task(task_id).to_dict()


class TaskStatus(Resource):
    @role_required(["employee", "manager", "admin"])
    def put(self, task_id: int) -> Any:
        data = request.get_json(silent=True) or {}
        if data.get("status") not in STATUSES:
            return {"error": f"status must be one of {', '.join(STATUSES)}"}, 400
        task = visible_task(task_id)
        task.status = data["status"]
        task.completed_at = (datetime.now(UTC).replace(tzinfo=None)
                             if task.status == "completed" else None)
        db.session.commit()
        if task.assigned_user_id is not None:
            redis_client.delete(cache_key("/tasks/mine", task.assigned_user_id))
        return task.to_dict(), 200


class Stats(Resource):
    @role_required(["admin", "manager"])
    def get(self) -> Any:
        by_status = dict(db.session.query(Task.status, func.count(Task.id))
                         .group_by(Task.status).all())
        now = datetime.now(UTC).replace(tzinfo=None)
        return {
            "total_users": User.query.count(),
            "total_tasks": sum(by_status.values()),
            "completed_tasks": by_status.get("completed", 0),
            "tasks_by_status": {s: by_status.get(s, 0) for s in STATUSES},
            "overdue_tasks": Task.query.filter(Task.status != "completed",
                                               Task.deadline < now).count(),
            "pending_approvals": User.query.filter_by(approved=False).count(),
        }
