"""The seed tutorial's final project (chapter 12) as bench/compare.py runs it: Flask,
Flask-RESTful, Flask-JWT-Extended, Flask-SQLAlchemy (SQLite unless DATABASE_URL says
otherwise) and Redis, served the tutorial's way:

    gunicorn -w 4 -b 127.0.0.1:5000 main:app        # from this directory

Environment: DATABASE_URL, DB_SCHEMA (PostgreSQL: the schema to use), REDIS_URL,
JWT_SECRET_KEY, CACHE_PREFIX (in front of the Redis keys), CACHE_TIMEOUT (s, default 120).
`python main.py initdb` creates the tables (the tutorial's `db.create_all()`).
"""

import os
import sys
from datetime import timedelta

from extensions import db, jwt
from flask import Flask
from flask_restful import Api
from resources import Login, MyTasks, Stats, TaskDetail, TaskStatus

app = Flask(__name__)
BASE_DIR = os.path.abspath(os.path.dirname(__file__))
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get(
    "DATABASE_URL", "sqlite:///" + os.path.join(BASE_DIR, "database.sqlite3"))
app.config["SQLALCHEMY_TRACK_MODIFICATIONS"] = False
if os.environ.get("DB_SCHEMA"):
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "connect_args": {"options": f"-csearch_path={os.environ['DB_SCHEMA']}"}}
app.config["JWT_SECRET_KEY"] = os.environ.get("JWT_SECRET_KEY", "your_secret_key_here")
app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(hours=24)

db.init_app(app)
jwt.init_app(app)
api = Api(app)
api.add_resource(Login, "/login")
api.add_resource(MyTasks, "/tasks/mine")
api.add_resource(TaskDetail, "/task/<int:task_id>")
api.add_resource(TaskStatus, "/task/<int:task_id>/status")
api.add_resource(Stats, "/stats")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__" and sys.argv[1:] == ["initdb"]:
    with app.app_context():
        db.create_all()
