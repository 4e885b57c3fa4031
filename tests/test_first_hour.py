"""The rough edges a newcomer hit (issue 20): request media types, field names in errors,
who may be assigned a task."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from quart import Quart
from quart_schema import validate_request
from quart_schema.validation import DataSource

from taskapi.app import create_app
from taskapi.http.bodies import declared_media_type
from tests.support.values import PASSWORD

PROBLEM = "application/problem+json"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _json_routes(app: Quart) -> list[tuple[str, str]]:
    """(method, rule) of every route that declares a JSON body, mirror and aliases included."""
    found = []
    for rule in app.url_map.iter_rules():
        if declared_media_type(app.view_functions[rule.endpoint]) != "application/json":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS", "GET"}):
            found.append((method, rule.rule))
    return found


async def test_every_json_route_refuses_a_form_body_with_415(app, client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    created = await client.post("/tasks", headers=admin.headers, json={"title": "keep me"})
    task = await created.get_json()
    comment = await (await client.post(f"/task/{task['id']}/comments", headers=admin.headers,
                                       json={"body": "keep me too"})).get_json()
    routes = _json_routes(app)
    assert len(routes) >= 20  # root, /api/v1 and the aliases
    for method, rule in routes:
        url = (rule.replace("<int:task_id>", str(task["id"]))
               .replace("<int:user_id>", str(admin.id))
               .replace("<int:comment_id>", str(comment["id"]))
               .replace("<int:webhook_id>", "1"))  # refused before any row is looked up
        assert "<" not in url, url
        response = await client.open(url, method=method, headers={**admin.headers, **FORM},
                                     data="title=changed&status=completed")
        assert response.status_code == 415, (method, url, response.status_code)
        assert response.content_type == PROBLEM
        body = await response.get_json()
        assert body["code"] == "unsupported_media_type"
        assert body["expected_content_type"] == "application/json"
        assert "Content-Type: application/json" in body["detail"]
        assert response.headers["Accept"] == "application/json"
    # Nothing changed.
    again = await client.get(f"/task/{task['id']}", headers=admin.headers)
    assert (await again.get_json())["title"] == "keep me"


async def test_curl_default_login_names_the_content_type(client, make_user) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    # What `curl -X POST /login -d '{…}'` sends.
    response = await client.post("/login", headers=FORM,
                                 data=f'{{"email": "{user.email}", "password": "{PASSWORD}"}}')
    assert response.status_code == 415
    assert "application/json" in (await response.get_json())["detail"]
    # A JSON subtype is JSON; the same body then logs in.
    ok = await client.post("/login", headers={"Content-Type": "application/json; charset=utf-8"},
                           data=f'{{"email": "{user.email}", "password": "{PASSWORD}"}}')
    assert ok.status_code == 200


async def test_routes_without_a_body_and_optional_bodies_take_none(client, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    report = await client.post("/reports", headers=manager.headers)  # no body, no type
    assert report.status_code == 202
    logout = await client.post("/logout", headers={**manager.headers, **FORM}, data="x=1")
    assert logout.status_code == 204  # it declares no body: what is sent is ignored


@pytest.mark.parametrize("payload", [b"[]", b'"text"', b"42", b"null"])
async def test_a_body_that_is_not_an_object_names_no_class(client, payload) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/login", data=payload,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    text = (await response.get_data()).decode()
    assert "LoginIn" not in text and "instance of" not in text
    body = await response.get_json()
    assert body["errors"][0]["msg"] == "Input should be a JSON object"


class _Form(BaseModel):
    username: str


@pytest.fixture
async def form_app(settings, redis_sync):  # type: ignore[no-untyped-def]
    """An app with a form-encoded route, as `POST /token` (another branch) will be."""
    app = create_app(settings)

    @app.post("/_form")
    @validate_request(_Form, source=DataSource.FORM)
    async def form_route(data: _Form) -> dict[str, str]:
        return {"username": data.username}

    async with app.test_app() as test_app:
        yield test_app.app


async def test_a_form_route_declares_its_own_media_type(form_app) -> None:  # type: ignore[no-untyped-def]
    client = form_app.test_client()
    ok = await client.post("/_form", headers=FORM, data="username=ada")
    assert ok.status_code == 200 and (await ok.get_json()) == {"username": "ada"}
    refused = await client.post("/_form", json={"username": "ada"})
    assert refused.status_code == 415
    assert (await refused.get_json())["expected_content_type"] == (
        "application/x-www-form-urlencoded")


# --- who may be assigned ---------------------------------------------------------------------

@pytest.mark.parametrize("who", ["admin", "pending", "unknown"])
async def test_only_approved_employees_and_managers_are_assignable(client, make_user, who) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    target_id = {"admin": lambda: make_user("admin"),
                 "pending": lambda: make_user("employee", approved=False)}
    target: Any = await target_id[who]() if who in target_id else None
    user_id = target.id if target else 999_999
    created = await client.post("/tasks", headers=manager.headers, json={"title": "t"})
    task = await created.get_json()
    response = await client.put(f"/task/{task['id']}/assign", headers=manager.headers,
                                json={"user_id": user_id})
    assert response.status_code == 422, who
    body = await response.get_json()
    assert body["code"] == "invalid_assignee"
    assert [e["loc"] for e in body["errors"]] == [["user_id"]]
    create = await client.post("/tasks", headers=manager.headers,
                               json={"title": "t", "assigned_user_id": user_id})
    assert create.status_code == 422
    assert [e["loc"] for e in (await create.get_json())["errors"]] == [["assigned_user_id"]]
    still = await client.get(f"/task/{task['id']}", headers=manager.headers)
    assert (await still.get_json())["assigned_user_id"] is None
    listed = await client.get("/tasks", headers=manager.headers)
    assert len(await listed.get_json()) == 1  # the refused create added nothing


@pytest.mark.parametrize("role", ["employee", "manager"])
async def test_employees_and_managers_are_assignable(client, make_user, role) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    target = await make_user(role)
    created = await client.post("/tasks", headers=manager.headers, json={"title": "t"})
    task = await created.get_json()
    response = await client.put(f"/task/{task['id']}/assign", headers=manager.headers,
                                json={"user_id": target.id})
    assert response.status_code == 200
    assert (await response.get_json())["assigned_user_id"] == target.id


# --- links keep the prefix; the alias rule ----------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_location_keeps_the_prefix_the_request_came_in_on(client, make_user, prefix) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    created = await client.post(f"{prefix}/tasks", headers=manager.headers, json={"title": "t"})
    task = await created.get_json()
    assert created.headers["Location"] == f"{prefix}/task/{task['id']}"
    followed = await client.get(created.headers["Location"], headers=manager.headers)
    assert followed.status_code == 200 and (await followed.get_json())["id"] == task["id"]
    report = await client.post(f"{prefix}/reports", headers=manager.headers)
    job = await report.get_json()
    assert report.headers["Location"] == f"{prefix}/reports/{job['job_id']}"
    assert (await client.get(report.headers["Location"], headers=manager.headers)).status_code == 200
    for _ in range(2):
        await client.post(f"{prefix}/tasks", headers=manager.headers, json={"title": "more"})
    page = await client.get(f"{prefix}/tasks?limit=1", headers=manager.headers)
    assert page.headers["Link"].startswith(f"<{prefix}/tasks?")


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_every_task_route_answers_at_tasks_and_users_at_user(client, make_user, prefix) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    employee = await make_user("employee")
    created = await client.post(f"{prefix}/tasks", headers=admin.headers, json={"title": "t"})
    base = f"{prefix}/tasks/{(await created.get_json())['id']}"
    h = admin.headers
    assert (await client.get(base, headers=h)).status_code == 200
    assert (await client.put(base, headers=h, json={"title": "renamed"})).status_code == 200
    status = await client.put(f"{base}/status", headers=h, json={"status": "in-progress"})
    assert status.status_code == 200 and (await status.get_json())["status"] == "in-progress"
    assign = await client.put(f"{base}/assign", headers=h, json={"user_id": employee.id})
    assert (await assign.get_json())["assigned_user_id"] == employee.id
    user = await client.get(f"{prefix}/user/{employee.id}", headers=h)
    assert user.status_code == 200 and (await user.get_json())["id"] == employee.id
    changed = await client.put(f"{prefix}/user/{employee.id}", headers=h, json={"role": "manager"})
    assert (await changed.get_json())["role"] == "manager"
    assert (await client.delete(base, headers=h)).status_code == 204
    assert (await client.get(base, headers=h)).status_code == 404
    assert (await client.delete(f"{prefix}/user/{employee.id}", headers=h)).status_code == 204
    # /user/ is an alias of /users/{id} only, not of the collection or the actions.
    assert (await client.get(f"{prefix}/user/pending", headers=h)).status_code == 404


async def test_the_spec_documents_each_operation_once(client) -> None:  # type: ignore[no-untyped-def]
    spec = await (await client.get("/openapi.json")).get_json()
    paths = set(spec["paths"])
    assert not [p for p in paths if p.startswith(("/tasks/{", "/user/{", "/api/v1"))]
    assert {"/task/{task_id}", "/task/{task_id}/status", "/task/{task_id}/assign",
            "/users/{user_id}"} <= paths
    assert "`/tasks/{id}…`" in spec["info"]["description"]


# --- problem types lead somewhere ------------------------------------------------------------

def _codes_in_source() -> set[str]:
    """Every problem code the package can answer with, found in its source."""
    import re
    from pathlib import Path

    import taskapi

    pattern = re.compile(r"""(?:APIError\(\s*\d{3},\s*|problem\(\s*\d{3},\s*|conflict\(\s*"""
                         r"""|unauthorized\(\s*)"([a-z_]+)\"""")
    found: set[str] = set()
    for path in Path(taskapi.__file__).parent.rglob("*.py"):
        found |= set(pattern.findall(path.read_text()))
    return found | {"not_found", "method_not_allowed"}  # werkzeug's, named by status


def test_every_code_in_the_source_is_in_the_catalog_and_the_readme() -> None:
    from pathlib import Path

    from taskapi.core.problem_catalog import CATALOG

    codes = _codes_in_source()
    assert len(codes) > 25
    assert codes - set(CATALOG) == set()
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert [code for code in CATALOG if f"`{code}`" not in readme] == []


async def test_problem_type_is_absolute_and_answers_a_page(client, app_with) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/no/such/thing")
    body = await response.get_json()
    assert body["type"] == "http://localhost/problems/not_found"  # the request's base URL
    page = await client.get("/problems/not_found")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = (await page.get_data()).decode()
    assert "<h1>Not found</h1>" in text and "404" in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    async with app_with(public_url="https://tasks.example.com/") as app:
        other = await app.test_client().get("/api/v1/tasks")
        assert (await other.get_json())["type"] == (
            "https://tasks.example.com/problems/not_authenticated")


async def test_every_catalog_page_is_escaped_and_unknown_codes_are_404(client) -> None:  # type: ignore[no-untyped-def]
    from taskapi.core.problem_catalog import CATALOG

    for code in CATALOG:
        page = await client.get(f"/problems/{code}")
        text = (await page.get_data()).decode()
        assert page.status_code == 200, code
        assert "<script" not in text and "`" not in text  # code spans became <code>
    missing = await client.get("/problems/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert missing.status_code == 404 and missing.content_type == PROBLEM
    assert "<script>" not in (await missing.get_data()).decode()


def test_the_page_escapes_what_it_shows(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from taskapi.core import problem_catalog
    from taskapi.http.blueprints.problem_pages import render

    monkeypatch.setitem(problem_catalog.CATALOG, "x", problem_catalog.ProblemType(
        400, "<b>bold</b>", "a `<img src=x onerror=alert(1)>` here & <i>there</i>"))
    text = render("x")
    assert "<img" not in text and "<i>" not in text and "<b>" not in text
    assert "<code>&lt;img src=x onerror=alert(1)&gt;</code>" in text


# --- datetimes need an offset ----------------------------------------------------------------

async def test_a_datetime_without_an_offset_is_422_in_body_and_query(client, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    h = manager.headers
    created = await client.post("/tasks", headers=h, json={"title": "t",
                                                           "deadline": "2026-12-24T17:00"})
    assert created.status_code == 422
    error = (await created.get_json())["errors"][0]
    assert error["loc"] == ["deadline"] and error["type"] == "naive_datetime"
    assert "offset" in error["msg"] and "Z" in error["msg"]
    assert await (await client.get("/tasks", headers=h)).get_json() == []  # nothing created
    ok = await client.post("/tasks", headers=h, json={"title": "t",
                                                      "deadline": "2026-12-24T17:00+01:00"})
    task = await ok.get_json()
    assert task["deadline"].startswith("2026-12-24T16:00:00")
    update = await client.put(f"/task/{task['id']}", headers=h,
                              json={"deadline": "2026-12-25T09:00:00"})
    assert update.status_code == 422
    assert (await update.get_json())["errors"][0]["type"] == "naive_datetime"
    for name in ("due_before", "due_after"):
        listed = await client.get(f"/tasks?{name}=2026-12-24T17:00", headers=h)
        assert listed.status_code == 422, name
        assert (await listed.get_json())["errors"][0]["loc"] == [name]
        mine = await client.get(f"/tasks/mine?{name}=2026-12-24T17:00", headers=h)
        assert mine.status_code == 422, name
    dated = await client.get("/tasks?due_before=2026-12-25", headers=h)  # a date: 00:00 UTC
    assert [t["id"] for t in await dated.get_json()] == [task["id"]]
    zulu = await client.get("/tasks?due_after=2026-12-24T16:30:00Z", headers=h)
    assert await zulu.get_json() == []


# --- the shutdown log says one true thing -----------------------------------------------------

async def test_sigterm_to_serve_logs_one_true_stop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`taskapi serve` with embedded Redis (the worker in-process): SIGTERM is logged once, by
    the supervisor; the worker's stop names no signal it never got (arq said SIGTERM, then
    SIGUSR1)."""
    import asyncio
    import signal

    from tests.support.ports import free_port
    from tests.support.processes import cli_env, serve

    env = cli_env(tmp_path / "data")  # no REDIS_URL: embedded, worker in this process
    port = free_port()
    with serve(env, port=port, stop=False) as (_base, process):
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    log = (tmp_path / f"serve-{port}.log").read_text()
    assert "SIGUSR1" not in log
    assert log.count("SIGTERM") == 1, log
    assert "SIGTERM: finishing in-flight requests" in log
    assert log.count("in-process worker stopped") == 1, log


# --- emails ------------------------------------------------------------------------------------

async def test_assignment_email_names_the_assigner_and_says_overdue(make_settings, redis_sync, redis_url, make_user) -> None:  # type: ignore[no-untyped-def]
    """Through the outbox files of the embedded default (no SMTP host)."""
    import email
    import email.policy
    import re
    from datetime import UTC, datetime, timedelta

    from taskapi.app import create_app
    from tests.support.worker import run_worker_burst

    settings = make_settings()
    manager = await make_user("manager", name="maria")
    employee = await make_user("employee", name="ed")
    past = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        late = await client.post("/tasks", headers=manager.headers, json={
            "title": "File the report", "deadline": past.isoformat(),
            "assigned_user_id": employee.id})
        assert late.status_code == 201
        on_time = await client.post("/tasks", headers=manager.headers, json={
            "title": "Plan the week", "deadline": "2999-01-01", "assigned_user_id": employee.id})
        assert on_time.status_code == 201
    await run_worker_burst(settings, redis_url)
    files = sorted((settings.data_dir / "outbox").glob("*.eml"))
    assert len(files) == 2
    for path in files:
        assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-assigned-ed@example\.test(-\d+)?\.eml",
                            path.name), path.name
    messages = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in files]
    by_subject = {m["Subject"]: m for m in messages}
    late_mail = by_subject["New task for you: File the report"]
    text = late_mail.get_body(("plain",)).get_content()
    assert "maria assigned you a task" in text
    assert f"Overdue since {past:%Y-%m-%d %H:%M} UTC" in text
    html = late_mail.get_body(("html",)).get_content()
    assert "maria assigned you" in html and "Overdue since" in html
    other = by_subject["New task for you: Plan the week"].get_body(("plain",)).get_content()
    assert "maria assigned you a task" in other and "Overdue" not in other
    for message in messages:
        assert message["Date"].endswith("+0000"), message["Date"]


def test_outbox_file_names_are_sanitised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from taskapi.mail import eml_path

    now = datetime(2026, 12, 24, 17, 0, 0, 123456, tzinfo=UTC)
    path = eml_path(tmp_path, "welcome", "../../etc/x y\r\n@a.test", now)
    assert path.parent == tmp_path
    assert path.name == "20261224T170000.123456Z-welcome-_.._etc_x_y_@a.test.eml"
    path.write_text("taken")
    assert eml_path(tmp_path, "welcome", "../../etc/x y\r\n@a.test", now).name.endswith("-2.eml")


# --- the spec: named components, examples, operation ids -------------------------------------

async def test_every_body_is_a_named_component_with_a_valid_example(app, client) -> None:  # type: ignore[no-untyped-def]
    import jsonschema_rs

    spec = await (await client.get("/openapi.json")).get_json()
    schemas = spec["components"]["schemas"]
    assert {"Task", "User", "Problem", "TokenPair", "Login", "NewTask", "Report",
            "Stats"} <= set(schemas)
    assert not {"TaskOut", "UserOut", "LoginIn"} & set(schemas)  # class names stay inside
    names = {view.__name__ for view in app.view_functions.values()}
    seen_ids: list[str] = []
    bodies = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            seen_ids.append(operation["operationId"])
            media = [("request", operation["requestBody"]["content"])] if (
                "requestBody" in operation) else []
            media += [(status, r["content"]) for status, r in operation["responses"].items()
                      if "content" in r]
            for where, content in media:
                for media_type, body in content.items():
                    if media_type == "text/event-stream":
                        continue  # GET /events: lines of text, described in its docs
                    schema = body["schema"]
                    ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
                    assert ref and ref.startswith("#/components/schemas/"), (
                        method, path, where, schema)
                    assert ref.rsplit("/", 1)[1] in schemas
                    if media_type == "application/json":
                        bodies += 1
                        assert "example" in body, (method, path, where)
                        # The schema as a document of its own: its refs resolve in it.
                        document = {**schema, "components": spec["components"]}
                        validator = jsonschema_rs.Draft202012Validator(document)
                        assert validator.is_valid(body["example"]), (method, path, where)
                        assert not validator.is_valid({"surely": "not"})  # it does check
    assert bodies > 30
    assert len(seen_ids) == len(set(seen_ids))
    assert set(seen_ids) <= names  # operationId = the view's name
    assert "create_task" in seen_ids and "get_task" in seen_ids


async def test_tasks_mine_documents_only_its_filters(client) -> None:  # type: ignore[no-untyped-def]
    spec = await (await client.get("/openapi.json")).get_json()
    mine = {p["name"] for p in spec["paths"]["/tasks/mine"]["get"]["parameters"]}
    every = {p["name"] for p in spec["paths"]["/tasks"]["get"]["parameters"]}
    assert every - mine == {"assigned_user_id"}
    assert "naive_datetime" in str(spec["paths"]["/tasks"]["get"]["parameters"])
