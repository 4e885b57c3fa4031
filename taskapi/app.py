"""create_app(): extensions, blueprints, error handlers and lifecycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from quart import Quart, Response, g, request
from quart_cors import cors
from quart_schema import QuartSchema

from taskapi import __version__
from taskapi.config import Settings, load_settings
from taskapi.core import metrics
from taskapi.core.cache import digest
from taskapi.core.db import Database
from taskapi.core.embedded_redis import resolve_redis_url
from taskapi.core.logs import configure_logging, request_id_for, request_id_var
from taskapi.core.redis_client import keep_probing
from taskapi.core.state import AppState
from taskapi.http.admission import ConcurrencyLimit, body_error
from taskapi.http.aliases import DESCRIPTION as ALIASES
from taskapi.http.aliases import add_aliases
from taskapi.http.blueprints import API_BLUEPRINTS, ROOT_BLUEPRINTS
from taskapi.http.bodies import check_media_type
from taskapi.http.cached_reads import STARTED_KEY, CachedReads
from taskapi.http.current import EXTENSION_KEY, close_db_session
from taskapi.http.event_stream import EventStreams
from taskapi.http.gate import identify_and_limit
from taskapi.http.headers import add_declared_headers
from taskapi.http.limits import CONVERTERS, check_ids, guard_json, head_error
from taskapi.http.live import install_hub
from taskapi.http.openapi import API_PREFIX, BODY_METHODS, Provider
from taskapi.http.problems import register_error_handlers

log = logging.getLogger("taskapi")



def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or load_settings()
    settings.check()
    configure_logging(settings.log_level, settings.log_format)

    app = Quart("taskapi", static_folder=None)  # no default /static route: nothing to serve
    app.url_map.converters.update(CONVERTERS)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        PROPAGATE_EXCEPTIONS=False,
    )
    state = AppState(settings=settings,
                       db=Database.from_url(settings.sqlalchemy_url, settings.db_lock_timeout))
    app.extensions[EXTENSION_KEY] = state

    QuartSchema(
        app,
        openapi_path="/openapi.json",
        # Our own /docs serves Swagger UI from local assets; the extension's pages use CDNs.
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "taskapi", "version": __version__,
              "description": "Task management API: users, approval, JWT sessions, tasks, "
                             "email reminders and reports. Every route is also served under "
                             f"`{API_PREFIX}`. {ALIASES}"},
        security_schemes={
            # A login's access token (JWT) or a personal access token (tka_…).
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearer_format": "JWT or tka_…"},
            # The docs' Authorize dialog logs in with email (as username) and password.
            "oauth2Password": {"type": "oauth2",
                               "flows": {"password": {"tokenUrl": "/token", "scopes": {}}}},
        },
        openapi_provider_class=Provider,
    )
    guard_json(app)
    register_error_handlers(app)

    for blueprint in ROOT_BLUEPRINTS:
        app.register_blueprint(blueprint)
    for blueprint in API_BLUEPRINTS:
        app.register_blueprint(blueprint)
        app.register_blueprint(blueprint, url_prefix=API_PREFIX, name=f"v1_{blueprint.name}")
    add_aliases(app)  # /tasks/{id}… and /user/{id}, at the root and under /api/v1

    _install_request_hooks(app)
    _install_lifecycle(app)
    install_hub(app)  # live events: the process's hub (http/live.py)
    limited = ConcurrencyLimit(app.asgi_app, settings.max_concurrency,
                               max_body=settings.max_body_bytes,
                               body_timeout=settings.body_timeout)
    app.asgi_app = limited  # type: ignore[method-assign,assignment]

    if settings.cors_origins:
        app = cors(
            app,
            allow_origin=settings.cors_origins,
            allow_headers=["Authorization", "Content-Type", "If-None-Match", "X-Request-ID"],
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            expose_headers=["ETag", "Link", "Location", "Retry-After", "X-Request-ID",
                            "X-Total-Count"],
            max_age=600,
        )
    # Cache hits of the cached GET routes are answered before Quart (http/cached_reads.py).
    # Why: docs/decisions/015-cached-reads-fast-path.md
    # A miss it builds itself takes one of the admission slots, like a request in Quart.
    # GET /events streams are opened and written below both (http/event_stream.py).
    # Why: docs/decisions/043-event-streams-below-quart.md
    streams = EventStreams(app, state, app.asgi_app)
    app.asgi_app = CachedReads(app, state, streams,  # type: ignore[method-assign, assignment]
                               slots=limited.slots)
    return app


def _install_request_hooks(app: Quart) -> None:
    @app.before_request
    async def _start() -> None:
        g.started = request.scope.get(STARTED_KEY) or time.perf_counter()
        g.request_id = request_id_for(request.headers.get("X-Request-ID", ""))
        request_id_var.set(g.request_id)
        # The body was read before admission; one too slow to arrive is a 408 (decision 020).
        late = body_error(request.scope)
        if late is not None:
            raise late
        if request.method in BODY_METHODS:
            # Read the body before anything may answer early (401/403): hypercorn drops a
            # keep-alive connection when a response goes out with the body still unread.
            await request.get_data(cache=True)
        error = head_error(request.query_string, request.headers.items())
        if error is not None:
            raise error
        check_ids(request.view_args)
        await identify_and_limit()
        if request.method in BODY_METHODS:
            await check_media_type()  # 415 for a body that is not the route's type

    @app.after_request
    async def _finish(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        if (request.method == "GET" and response.status_code == 200
                and response.mimetype == "application/json"):
            # A route's own ETag (a version) stands; other JSON gets its body's digest.
            if "ETag" not in response.headers:
                response.headers["ETag"] = f'"{digest(await response.get_data(as_text=True))}"'
            etag = response.headers["ETag"].strip('"')
            response.headers.setdefault("Cache-Control", "private, no-cache")
            if request.if_none_match.contains_weak(etag):
                response.status_code = 304
                response.set_data(b"")
        add_declared_headers(response)  # after the defaults above: a route's own word wins
        started = g.get("started")
        if started is not None:
            metrics.observe_request(request.endpoint, request.method, response.status_code,
                                    time.perf_counter() - started)
        return response

    @app.teardown_request
    async def _teardown(_exc: BaseException | None) -> None:
        await close_db_session()


def _install_lifecycle(app: Quart) -> None:
    background: list[asyncio.Task[None]] = []

    @app.before_serving
    async def _startup() -> None:
        state: AppState = app.extensions[EXTENSION_KEY]
        url, state.embedded = await asyncio.to_thread(
            resolve_redis_url, state.settings.redis_url, state.settings.data_dir
        )
        state.connect(url)
        metrics.worker_started()
        background.append(asyncio.create_task(keep_probing(state.redis)))

    @app.after_serving
    async def _shutdown() -> None:
        state: AppState = app.extensions[EXTENSION_KEY]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        background.clear()
        state.gate.close()
        await state.redis.aclose()
        await state.db.dispose()
        if state.embedded is not None:
            # Stops the server only if this process started it.
            await asyncio.to_thread(state.embedded.stop)


# The young generation collected every 10,000 net allocations, not 700: at thousands of
# requests a second the default promotes every in-flight request's objects towards the oldest
# generation, whose collections then walk every held stream's objects (decision 004).
GC_THRESHOLDS = (10_000, 10, 10)


async def settle_heap() -> None:
    """For a serving process, once started: collect, then freeze what survives (the modules,
    the app, its pools) out of the garbage collector's way (decision 004).

    Not for the test client, whose process starts many apps: ops/asgi.py, the served entry
    point, adds it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
