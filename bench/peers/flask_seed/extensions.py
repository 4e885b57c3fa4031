"""The tutorial's extensions (chapters 3-5): Flask-SQLAlchemy, Flask-JWT-Extended and a
redis-py client made from REDIS_URL with decode_responses=True."""

import os

from flask_jwt_extended import JWTManager
from flask_sqlalchemy import SQLAlchemy
from redis import Redis

db = SQLAlchemy()
jwt = JWTManager()
redis_client = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
                              decode_responses=True)
