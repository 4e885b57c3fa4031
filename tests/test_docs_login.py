"""The docs page logs in: Swagger UI's Authorize dialog (OAuth2 password flow, POST /token)
in a real headless chromium, then "Try it out" on GET /tasks/mine with the token it got."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.cdp import CHROMIUM, Browser
from tests.support.processes import cli_env, serve
from tests.support.values import PASSWORD

# Runs in the page: log in through the dialog, then run the call; returns what it saw.
_SCRIPT = """
(async () => {
  const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
  const until = async (find, what) => {
    for (let i = 0; i < 300; i++) { const found = find(); if (found) return found; await sleep(100); }
    throw new Error("timed out waiting for " + what);
  };
  const type = (input, value) => {
    const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set;
    setter.call(input, value);
    input.dispatchEvent(new Event("input", {bubbles: true}));
    input.dispatchEvent(new Event("change", {bubbles: true}));
  };
  (await until(() => document.querySelector(".auth-wrapper .authorize"), "Authorize")).click();
  const username = await until(() => document.querySelector("#oauth_username"), "the dialog");
  type(username, %(email)s);
  type(document.querySelector("#oauth_password"), %(password)s);
  const form = username.closest(".auth-container");
  form.querySelector("button.authorize").click();
  await until(() => [...form.querySelectorAll("button")].some(b => b.textContent.trim() === "Logout")
                    || form.querySelector(".errors"), "the login to finish");
  const loginError = form.querySelector(".errors") ? form.querySelector(".errors").textContent : null;
  document.querySelector(".btn-done, .auth-btn-wrapper .btn-done").click();
  const block = await until(() => document.querySelector("#operations-tasks-my_tasks"), "GET /tasks/mine");
  (block.querySelector(".opblock-summary-control") || block.querySelector(".opblock-summary")).click();
  (await until(() => block.querySelector(".try-out__btn"), "Try it out")).click();
  (await until(() => block.querySelector(".execute"), "Execute")).click();
  const status = await until(() => block.querySelector(".live-responses-table .response .response-col_status"),
                             "the response");
  const curl = block.querySelector(".curl") ? block.querySelector(".curl").textContent : "";
  const body = block.querySelector(".live-responses-table .response-col_description pre");
  return {loginError, status: status.textContent.trim(), curl, body: body ? body.textContent : ""};
})()
"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
async def test_docs_authorize_dialog_logs_in_and_runs_a_call(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user, db) -> None:  # type: ignore[no-untyped-def]
    user = await make_user("employee")
    created = await make_user("manager")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url)
    with serve(env, "--no-worker") as base:
        import httpx

        task = httpx.post(base + "/tasks", headers=created.headers,
                          json={"title": "Seen from the docs", "assigned_user_id": user.id})
        assert task.status_code == 201
        with Browser(tmp_path / "profile") as browser:
            page = browser.new_page()
            page.navigate(base + "/docs")
            deadline = time.monotonic() + 60
            while not page.evaluate("!!document.querySelector('.auth-wrapper .authorize')"):
                assert time.monotonic() < deadline, "the docs page did not render"
                time.sleep(0.2)
            seen = page.evaluate(_SCRIPT % {"email": json.dumps(user.email),
                                            "password": json.dumps(PASSWORD)})
            console = page.console()
    assert seen["loginError"] is None, seen
    assert seen["status"] == "200", seen
    assert "Authorization: Bearer " in seen["curl"], seen
    assert "Seen from the docs" in seen["body"], seen
    assert [line for line in console if line.startswith(("error", "exception"))] == [], console
