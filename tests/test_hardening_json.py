"""A JSON object that repeats a key is refused: which of the values counts is up to each
parser (Python's keeps the last, many keep the first), so a proxy or a log reading the body
could see another request than the service does. RFC 8259 leaves it undefined."""

from __future__ import annotations

import pytest

PROBLEM = "application/problem+json"


@pytest.mark.parametrize("body", [
    '{"title": "harmless", "title": "the real one"}',
    '{"title": "t", "description": "d", "deadline": null, "deadline": "2030-01-01T00:00:00Z"}',
    '{"title": "t", "description": {"a": 1, "a": 2}}',  # nested, even where it is invalid
])
async def test_a_repeated_key_is_a_400_and_changes_nothing(client, make_user, body) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    response = await client.post("/tasks", data=body, headers={
        **manager.headers, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == PROBLEM
    problem = await response.get_json()
    assert problem["code"] == "malformed_request"
    assert "repeats the key" in problem["detail"]
    assert await (await client.get("/tasks", headers=manager.headers)).get_json() == []


async def test_the_same_key_in_sibling_objects_is_fine(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    response = await client.post("/webhooks", headers=admin.headers, json={
        "url": "https://93.184.215.14/a", "events": ["task.created"], "description": "x"})
    assert response.status_code == 201
    body = '[{"title": "one"}, {"title": "two"}]'  # not a task, but no repeated key either
    response = await client.post("/tasks", data=body, headers={
        **admin.headers, "Content-Type": "application/json"})
    assert response.status_code == 422
