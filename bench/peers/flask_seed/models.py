"""The tutorial's two tables (chapter 12, "Designing the Database Schema"): User (username,
email, password hash, role, approval, timestamps) and Task (title, description, status,
deadline, assigned user, timestamps). `created_by` and `completed_at` are added so the
answers carry the same fields as taskapi's."""

from datetime import UTC, datetime

from extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class User(db.Model):  # type: ignore[name-defined]
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(80), unique=True, nullable=False)
    email = db.Column(db.String(120), unique=True, nullable=False)
    password = db.Column(db.String(256), nullable=False)  # werkzeug pbkdf2:sha256 hash
    role = db.Column(db.String(20), nullable=False, default="employee")
    approved = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(db.DateTime, default=utcnow)
    updated_at = db.Column(db.DateTime, default=utcnow, onupdate=utcnow)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"


class Task(db.Model):  # type: ignore[name-defined]
    id = db.Column(db.Integer, primary_key=True)
    title = db.Column(db.String(200), nullable=False)
    description = db.Column(db.Text, nullable=False, default="")
    status = db.Column(db.String(20), nullable=False, default="pending")
    deadline = db.Column(db.DateTime, nullable=True)
    assigned_user_id = db.Column(db.Integer, db.ForeignKey("user.id"), nullable=True)
    created_by = db.Column(db.Integer, db.ForeignKey("user.id"), nullable=True)
    created_at = db.Column(db.DateTime, default=utcnow)
    updated_at = db.Column(db.DateTime, default=utcnow, onupdate=utcnow)
    completed_at = db.Column(db.DateTime, nullable=True)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "title": self.title, "description": self.description,
                "status": self.status, "deadline": _iso(self.deadline),
                "assigned_user_id": self.assigned_user_id, "created_by": self.created_by,
                "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
                "completed_at": _iso(self.completed_at)}
