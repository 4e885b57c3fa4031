"""An async FastAPI implementation of the routes bench/compare.py drives, written the way
FastAPI's docs and full-stack template suggest: SQLAlchemy 2 async sessions (aiosqlite or
asyncpg) per request as a dependency, the current user loaded from the database by a
dependency that checks the JWT (PyJWT, HS256), pydantic response models, and `/tasks/mine`
cached in Redis (redis.asyncio) per user with a TTL, deleted when a status changes.

    uvicorn main:app --host 127.0.0.1 --port 5000 --workers 2      # from this directory

Environment: DATABASE_URL (sqlite+aiosqlite:///... or postgresql+asyncpg://...), DB_SCHEMA
(PostgreSQL: the schema to use), REDIS_URL, JWT_SECRET_KEY, CACHE_PREFIX, CACHE_TTL (s, 120).
`python main.py initdb` creates the tables (SQLite: in WAL mode).
"""

import asyncio
import hashlib
import hmac
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, ConfigDict, TypeAdapter
from redis.asyncio import Redis
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./app.db")
SECRET = os.environ.get("JWT_SECRET_KEY", "change-me")
CACHE_PREFIX = os.environ.get("CACHE_PREFIX", "")
CACHE_TTL = int(os.environ.get("CACHE_TTL", "120"))
Status = Literal["pending", "in-progress", "completed"]
STATUSES: tuple[str, ...] = ("pending", "in-progress", "completed")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)
    password: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(20), default="employee")
    approved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    deadline: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    assigned_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    description: str
    status: Status
    deadline: datetime | None
    assigned_user_id: int | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class StatusIn(BaseModel):
    status: Status


class LoginIn(BaseModel):
    email: str
    password: str


TASK_LIST = TypeAdapter(list[TaskOut])


def make_engine() -> Any:
    if DATABASE_URL.startswith("sqlite"):
        engine = create_async_engine(DATABASE_URL, connect_args={"timeout": 5})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    schema = os.environ.get("DB_SCHEMA")
    args = {"server_settings": {"search_path": schema}} if schema else {}
    return create_async_engine(DATABASE_URL, connect_args=args)


engine = make_engine()
sessions = async_sessionmaker(engine, expire_on_commit=False)
redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    await redis.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def current_user(session: SessionDep,
                       authorization: Annotated[str | None, Header()] = None) -> User:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "Not authenticated")
    try:
        claims = jwt.decode(authorization[7:], SECRET, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "Invalid token") from exc
    user = await session.get(User, int(claims["sub"]))
    if user is None or not user.approved:
        raise HTTPException(403, "Access denied")
    return user


UserDep = Annotated[User, Depends(current_user)]


def mine_key(user_id: int) -> str:
    return f"{CACHE_PREFIX}tasks:mine:{user_id}"


def check_password(stored: str, password: str) -> bool:
    """A werkzeug `pbkdf2:sha256:<iterations>$<salt>$<hex>` hash (the seeded users')."""
    method, salt, digest = stored.split("$", 2)
    _, algo, iterations = method.split(":")
    mine = hashlib.pbkdf2_hmac(algo, password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(mine.hex(), digest)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/login")
async def login(data: LoginIn, session: SessionDep) -> dict[str, str]:
    user = (await session.execute(select(User).where(User.email == data.email))).scalar()
    if user is None or not await asyncio.to_thread(check_password, user.password,
                                                   data.password):
        raise HTTPException(401, "Invalid credentials")
    if not user.approved:
        raise HTTPException(403, "Account awaiting approval")
    expires = datetime.now(UTC) + timedelta(hours=24)
    token = jwt.encode({"sub": str(user.id), "role": user.role, "exp": expires}, SECRET,
                       algorithm="HS256")
    return {"access_token": token}


@app.get("/tasks/mine", response_model=list[TaskOut])
async def my_tasks(user: UserDep, session: SessionDep) -> Response:
    cached = await redis.get(mine_key(user.id))
    if cached is None:
        rows = (await session.execute(select(Task).where(Task.assigned_user_id == user.id)
                                      .order_by(Task.id).limit(50))).scalars().all()
        cached = TASK_LIST.dump_json(TASK_LIST.validate_python(rows, from_attributes=True))
        await redis.set(mine_key(user.id), cached, ex=CACHE_TTL)
    return Response(cached, media_type="application/json")


async def visible_task(session: AsyncSession, user: User, task_id: int) -> Task:
    task = await session.get(Task, task_id)
    if task is None or (user.role == "employee" and task.assigned_user_id != user.id):
        raise HTTPException(404, "Task not found")
    return task


@app.get("/task/{task_id}", response_model=TaskOut)
async def get_task(task_id: int, user: UserDep, session: SessionDep) -> Task:
    return await visible_task(session, user, task_id)


@app.put("/task/{task_id}/status", response_model=TaskOut)
async def set_status(task_id: int, data: StatusIn, user: UserDep, session: SessionDep) -> Task:
    task = await visible_task(session, user, task_id)
    now = datetime.now(UTC).replace(tzinfo=None)
    task.status, task.updated_at = data.status, now
    task.completed_at = now if data.status == "completed" else None
    await session.commit()
    if task.assigned_user_id is not None:
        await redis.delete(mine_key(task.assigned_user_id))
    return task


@app.get("/stats")
async def stats(user: UserDep, session: SessionDep) -> dict[str, Any]:
    if user.role not in ("admin", "manager"):
        raise HTTPException(403, "Access denied")
    by_status: dict[str, int] = dict((await session.execute(  # type: ignore[arg-type]
        select(Task.status, func.count()).group_by(Task.status))).all())
    now = datetime.now(UTC).replace(tzinfo=None)
    users = await session.scalar(select(func.count()).select_from(User))
    overdue = await session.scalar(select(func.count()).select_from(Task).where(
        Task.status != "completed", Task.deadline < now))
    pending = await session.scalar(select(func.count()).select_from(User)
                                   .where(User.approved.is_(False)))
    return {"total_users": users, "total_tasks": sum(by_status.values()),
            "completed_tasks": by_status.get("completed", 0),
            "tasks_by_status": {s: by_status.get(s, 0) for s in STATUSES},
            "overdue_tasks": overdue, "pending_approvals": pending}


async def initdb() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


if __name__ == "__main__" and sys.argv[1:] == ["initdb"]:
    asyncio.run(initdb())
