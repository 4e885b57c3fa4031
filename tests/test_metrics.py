"""GET /metrics: Prometheus text, who may read it, and totals across `taskapi serve` workers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from taskapi.app import create_app
from taskapi.models import EmailOutbox, EmailStatus
from tests.support.ports import free_port
from tests.support.processes import cli_env, serve

LOOPBACK = {"client": ("127.0.0.1", 40000)}
TOKEN = "metrics-token-0123456789abcdef"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """{(sample name, labels): value} from a text exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed: dict[Any, float], name: str, **labels: str) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: Any, **kwargs: Any) -> dict[Any, float]:
    response = await client.get("/metrics", scope_base=LOOPBACK, **kwargs)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return samples(await response.get_data(as_text=True))


async def test_requests_and_cache_are_counted_by_endpoint(make_settings, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    employee = await make_user("employee")
    app = create_app(make_settings())
    async with app.test_app() as test_app:
        client = test_app.test_client()
        before = await scrape(client)
        layer = app.asgi_app  # fastpath.CachedReads: answers cache hits before Quart
        for path in ("/tasks/mine", "/api/v1/tasks/mine"):  # a miss (Quart), then a hit
            response = await client.get(path, headers=employee.headers)
            assert response.status_code == 200
        assert layer.served == 1  # type: ignore[attr-defined]
        etag = response.headers["ETag"]
        revalidated = await client.get("/tasks/mine",
                                       headers={**employee.headers, "If-None-Match": etag})
        assert revalidated.status_code == 304 and layer.served == 2  # type: ignore[attr-defined]
        await client.get("/task/999999", headers=employee.headers)
        await client.get("/tasks/mine")  # no token: 401
        await client.get("/no/such/thing/123")
        await client.open("/healthz", method="BREW")  # a made-up method: one "OTHER" series
        after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    mine = {"endpoint": "tasks.my_tasks", "method": "GET"}
    assert delta("taskapi_http_requests_total", **mine, status="200") == 2  # root + /api/v1
    assert delta("taskapi_http_requests_total", **mine, status="401") == 1
    assert delta("taskapi_http_request_duration_seconds_count", **mine, status="200") == 2
    assert delta("taskapi_http_requests_total", **mine, status="304") == 1
    assert delta("taskapi_http_request_duration_seconds_sum", **mine, status="200") > 0
    assert delta("taskapi_http_requests_total", endpoint="tasks.get_task", method="GET",
                 status="404") == 1
    assert delta("taskapi_http_requests_total", endpoint="unmatched", method="GET",
                 status="404") == 1
    assert delta("taskapi_http_requests_total", endpoint="unmatched", method="OTHER",
                 status="405") == 1
    assert delta("taskapi_cache_lookups_total", cache="mine", result="miss") == 1
    assert delta("taskapi_cache_lookups_total", cache="mine", result="hit") == 2
    assert delta("taskapi_cache_lookups_total", cache="task", result="miss") == 1
    # Bounded labels: no raw paths, ids or query strings anywhere.
    endpoints = {dict(labels).get("endpoint") for name, labels in after}
    assert not any("/" in e for e in endpoints if e)


async def test_queue_and_outbox_are_read_at_scrape_time(make_settings, redis_sync, db) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings())
    async with app.test_app() as test_app:
        client = test_app.test_client()
        empty = await scrape(client)
        assert value(empty, "taskapi_jobs_queued") == 0
        assert value(empty, "taskapi_email_outbox", status="pending") == 0
        for name in ("ann", "bob"):
            created = await client.post("/register", json={
                "username": name, "email": f"{name}@example.test", "password": "long enough"})
            assert created.status_code == 202
        async with db.transaction() as session:
            await session.execute(update(EmailOutbox).where(
                EmailOutbox.dedupe_key.like("welcome:1")).values(status=EmailStatus.FAILED))
        now = await scrape(client)
    assert value(now, "taskapi_jobs_queued") == 2  # two welcome emails waiting for a worker
    assert value(now, "taskapi_email_outbox", status="pending") == 1
    assert value(now, "taskapi_email_outbox", status="failed") == 1
    assert value(now, "taskapi_email_outbox", status="sending") == 0
    assert value(now, "taskapi_metrics_source_up", source="redis") == 1
    assert value(now, "taskapi_metrics_source_up", source="database") == 1


async def test_redis_down_leaves_the_queue_out_and_says_so(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with app.test_app() as test_app:
        parsed = await scrape(test_app.test_client())
    assert value(parsed, "taskapi_metrics_source_up", source="redis") == 0
    assert ("taskapi_jobs_queued", frozenset()) not in parsed
    assert value(parsed, "taskapi_metrics_source_up", source="database") == 1


async def test_only_allowed_addresses_or_the_token_may_scrape(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(metrics_allow="10.0.0.0/8, 127.0.0.1",
                                   trusted_proxies=["127.0.0.2"], metrics_token=TOKEN,
                                   rate_limit_default="2/minute"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        unknown = await client.get("/no-such-page", scope_base=LOOPBACK)

        async def status(address: str, **headers: str) -> tuple[int, Any]:
            response = await client.get("/metrics", headers=headers,
                                        scope_base={"client": (address, 1234)})
            return response.status_code, await response.get_json()

        # Allowed: an address in METRICS_ALLOW (more scrapes than the rate limit allows).
        assert [(await status("10.1.2.3"))[0] for _ in range(4)] == [200] * 4
        assert (await status("::ffff:127.0.0.1"))[0] == 200  # a dual-stack listener's form
        # Anyone else gets exactly what an unknown URL gets: nothing reveals the endpoint.
        for code, body in [await status("203.0.113.7"),
                           await status("203.0.113.7", Authorization="Bearer wrong"),
                           await status("203.0.113.7", Authorization=f"Basic {TOKEN}"),
                           # through a trusted proxy, the forwarded client is what counts
                           await status("127.0.0.2", **{"X-Forwarded-For": "203.0.113.7"})]:
            assert code == 404
            body.pop("request_id")
            assert body == {k: v for k, v in (await unknown.get_json()).items()
                            if k != "request_id"}
        assert (await status("203.0.113.7", Authorization=f"Bearer {TOKEN}"))[0] == 200
        assert (await status("127.0.0.2", **{"X-Forwarded-For": "10.9.9.9"}))[0] == 200
        spec = await (await client.get("/openapi.json")).get_json()
    assert "/metrics" not in spec["paths"]


async def test_an_empty_token_setting_opens_nothing(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(metrics_allow="", metrics_token=""))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            response = await client.get("/metrics", headers=headers, scope_base=LOOPBACK)
            assert response.status_code == 404


def _per_worker_healthz(metrics_dir: Path) -> Counter[str]:
    """Each worker's own healthz count, read from its file: who served what."""
    counts: Counter[str] = Counter()
    for path in metrics_dir.glob("*/counter_*.db"):
        for key, count, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample == "taskapi_http_requests_total" and labels["endpoint"] == "health.healthz":
                counts[path.stem] += int(count)
    return counts


async def test_serve_with_two_workers_scrapes_show_the_total(tmp_path: Path, database_url: str, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url)
    metrics_dir, port = tmp_path / "data" / "metrics", free_port()
    stale = metrics_dir / f"127.0.0.1_{port}" / "counter_1.db"  # a previous run's file
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"garbage")
    with serve(env, "--workers", "2", port=port) as base:
        assert not stale.exists()
        sent = 0
        # A fresh connection per request, until both workers have answered some.
        while len(_per_worker_healthz(metrics_dir)) < 2 and sent < 2000:
            for _ in range(20):
                assert httpx.get(f"{base}/healthz", headers={"Connection": "close"}).status_code == 200
            sent += 20
        per_worker = _per_worker_healthz(metrics_dir)
        assert len(per_worker) == 2 and sum(per_worker.values()) == sent
        totals = []
        for _ in range(8):  # each scrape is answered by either worker
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text
            parsed = samples(text)
            totals.append((value(parsed, "taskapi_http_requests_total",
                                 endpoint="health.healthz", method="GET", status="200"),
                           value(parsed, "taskapi_http_workers")))
    assert totals == [(sent, 2)] * 8
