"""Schemathesis against a real `taskapi serve`: every operation of /openapi.json, as admin,
manager and employee, with valid and invalid input. Checks: no 5xx, and every status, content
type, body and header as the spec documents it.

A real server process rather than ASGI in-process: the requests go through hypercorn's HTTP
parsing (headers, percent-decoding, NUL bytes, body limits) as clients' requests do; the cost
over ASGI is a few ms per request, small beside generating the examples.

TASKAPI_FUZZ_EXAMPLES: examples per operation, role and mode (positive, negative); default 25
(about 2-3 min per database here).
TASKAPI_FUZZ_SEED: replay a run (the seed is printed in the summary line).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.processes import cli_env, serve

EXAMPLES = int(os.environ.get("TASKAPI_FUZZ_EXAMPLES", "25"))
ROLES = ("admin", "manager", "employee")
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


@dataclass
class Report:
    seed: int
    last: str = ""
    operations: set[str] = field(default_factory=set)
    examples: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def summary(self, database: str, seconds: float) -> str:
        spread = " ".join(f"{s}:{n}" for s, n in sorted(self.statuses.items()))
        return (f"fuzz[{database}]: {len(self.operations)} operations x {len(ROLES)} roles x "
                f"{len(MODES)} modes, {self.examples} requests, {len(self.failures)} failures, "
                f"{seconds:.0f} s, seed {self.seed} (statuses {spread})")


async def test_fuzz_every_operation_as_every_role(tmp_path, database_url, redis_url, redis_sync,  # type: ignore[no-untyped-def]
                                                  make_user, capsys) -> None:
    accounts = {role: await make_user(role) for role in ROLES}
    targets = [await make_user("employee") for _ in range(3)]
    targets += [await make_user("employee", approved=False) for _ in range(3)]
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_RATE_LIMIT_DEFAULT="1000000/minute",
                  TASKAPI_RATE_LIMIT_LOGIN="1000000/minute", TASKAPI_LOG_LEVEL="WARNING")
    with serve(env, "--no-worker") as base:
        ids = await _seed(base, accounts, targets)
        loop = asyncio.get_running_loop()

        def mint(role: str) -> str:
            account = asyncio.run_coroutine_threadsafe(make_user(role), loop).result()
            return str(account.access)

        tokens = {role: account.access for role, account in accounts.items()}
        seed = int(os.environ.get("TASKAPI_FUZZ_SEED") or random.randrange(2**32))
        started = time.monotonic()
        report = await asyncio.to_thread(_fuzz, base, tokens, mint, ids, seed)
        summary = report.summary("postgresql" if "postgresql" in database_url else "sqlite",
                                 time.monotonic() - started)
    with capsys.disabled():
        print("\n" + summary)
    assert len(report.operations) >= 25, summary
    assert not report.failures, summary + "\n\n" + "\n\n".join(report.failures.values())


async def _seed(base: str, accounts: dict[str, Any], targets: list[Any]) -> dict[str, list[Any]]:
    """Rows for path ids to hit: tasks (some the employee's), users (some pending), a report."""
    admin = accounts["admin"].headers
    task_ids = []
    async with httpx.AsyncClient(base_url=base) as client:
        assignees = [accounts["employee"].id, targets[0].id, None]
        for n in range(9):
            response = await client.post("/tasks", headers=admin, json={
                "title": f"seed {n}", "deadline": f"2030-01-{n + 1:02d}",
                "assigned_user_id": assignees[n % 3]})
            assert response.status_code == 201, response.text
            task_ids.append(response.json()["id"])
        report = await client.post("/reports", headers=accounts["manager"].headers)
        assert report.status_code == 202, report.text
    return {"task_id": task_ids, "user_id": [t.id for t in targets],
            "job_id": [report.json()["job_id"]]}


def _fuzz(base: str, tokens: dict[str, str], mint: Callable[[str], str],
          ids: dict[str, list[Any]], seed: int) -> Report:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    # Not GET /events: an endless stream has no response to check (tests/test_events_*.py).
    operations = [result.ok() for result in schema.get_all_operations()
                  if result.ok().path != "/events"]
    # Deletions last, so the other operations still find the seeded rows.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    report = Report(seed)
    session = requests.Session()
    for operation in operations:
        for role in ROLES:
            try:
                tokens[role] = _live_token(session, base, tokens[role], role, mint)
            except requests.ConnectionError as error:  # keep-alive connection dropped
                report.failures[(report.last, role, "connection")] = (
                    f"the server dropped the connection after {report.last}: {error}")
                tokens[role] = _live_token(session, base, tokens[role], role, mint)
            for mode in MODES:
                _run(operation, mode, base, session, role, tokens, ids, report)
    return report


def _live_token(session: requests.Session, base: str, token: str, role: str,
                mint: Callable[[str], str]) -> str:
    """The role's token, or a new account's if the fuzz logged it out, demoted or deleted it."""
    me = session.get(f"{base}/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return token if me.status_code == 200 and me.json()["role"] == role else mint(role)


def _run(operation: Any, mode: GenerationMode, base: str, session: requests.Session, role: str,
         tokens: dict[str, str], ids: dict[str, list[Any]], report: Report) -> None:
    strategy = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters]
    if names and mode == GenerationMode.POSITIVE and all(name in ids for name in names):
        # Half the examples address seeded rows; the other half, whatever was generated.
        seeded = [operation.as_strategy(generation_mode=mode, path_parameters={
            name: value for name in names}) for name in names for value in ids[name]]
        strategy = st.one_of(strategy, st.one_of(*seeded))

    @hypothesis.seed(seed=report.seed)
    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck), print_blob=False)
    @hypothesis.given(case=strategy)
    def check(case: Any) -> None:
        report.operations.add(operation.label)
        report.last = f"{operation.label} ({role}, {mode.value})"
        report.examples += 1
        try:
            response = case.call(base_url=base, session=session, timeout=30,
                                 headers={"Authorization": f"Bearer {tokens[role]}"})
            report.statuses[response.status_code] = report.statuses.get(
                response.status_code, 0) + 1
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as error:  # collected, reported at the end
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            key = (operation.label, role, f"{type(error).__name__}: {first}")
            report.failures.setdefault(key, f"[{role}, {mode.value}] {operation.label}\n"
                                            f"{str(error)[:3000]}")

    try:
        check()
    except hypothesis.errors.Unsatisfiable:
        pass  # nothing to make invalid (no parameters, no body): the negative mode has no case
