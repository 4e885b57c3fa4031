"""Attacks on outgoing webhooks (issue 18): addresses that reach the service's own network
in disguise, URLs whose request would differ from what was checked or shown, and inputs that
must answer a problem, not a 500. The delivery-time check is the same `destination` the
create-time one calls, so each refusal holds at both."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from taskapi.core.webhook_signing import new_secret
from taskapi.http.current import EXTENSION_KEY
from taskapi.models import TaskEvent, WebhookDelivery, WebhookEndpoint, utcnow
from taskapi.services import webhook_delivery, webhook_urls, webhooks
from taskapi.services.webhook_delivery import fan_out
from taskapi.services.webhook_send import Attempt, new_client, send
from taskapi.services.webhook_urls import Refused, destination
from tests.support.receiver import Receiver

# IPv6 forms that carry an IPv4 address the network may translate or tunnel to: the
# embedded address is what is reached, so it is what must be public.
EMBEDDED = [
    "http://[64:ff9b::7f00:1]/x",  # NAT64 (RFC 6052) of 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/latest",  # NAT64 of the metadata address
    "http://[64:ff9b::10.0.0.1]/x",
    "http://[64:ff9b:1::a00:1]/x",  # local-use NAT64 prefix (RFC 8215)
    "http://[2002:7f00:1::]/x",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/x",  # 6to4 of 169.254.169.254
    "http://[::127.0.0.1]/x",  # IPv4-compatible (deprecated)
    "http://[::ffff:0:7f00:1]/x",  # IPv4-translated (SIIT)
    "http://[fec0::1]/x",  # site-local (deprecated, still routed inside some networks)
]


@pytest.fixture
def receiver_process(tmp_path: Path) -> Iterator[Receiver]:
    running = Receiver(tmp_path).start()
    yield running
    running.stop()


@pytest.mark.parametrize("url", EMBEDDED)
async def test_ipv6_forms_of_inner_addresses_are_refused(url: str) -> None:
    with pytest.raises(Refused, match="non-public"):
        await destination(url, allow_private=False)
    await destination(url, allow_private=True)  # the setting still lifts it


@pytest.mark.parametrize("url", [
    "http://[64:ff9b::5db8:d70e]/x",  # NAT64 of a public address: IPv6-only networks need it
    "http://[2002:5db8:d70e::1]/x",
    "https://93.184.215.14/x",
])
async def test_their_public_counterparts_still_pass(url: str) -> None:
    await destination(url, allow_private=False)


async def _refused(client: Any, admin: Any, db: Any, url: str) -> dict[str, Any]:
    response = await client.post("/webhooks", headers=admin.headers,
                                 json={"url": url, "events": ["*"]})
    assert response.status_code == 422, await response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem: dict[str, Any] = await response.get_json()
    async with db.transaction(write=False) as session:
        assert list(await session.scalars(select(WebhookEndpoint.id))) == []
    return problem


@pytest.mark.parametrize("url", [
    "http://" + "a" * 64 + ".example.com/x",  # a DNS label longer than 63
    "http://a..example.com/x",  # an empty label
    "http://.example.com/x",
])
async def test_a_host_name_dns_cannot_encode_is_a_422_not_a_500(app_with, make_user, db, url) -> None:  # type: ignore[no-untyped-def]
    async with app_with(webhook_allow_private=True) as app:
        problem = await _refused(app.test_client(), await make_user("admin"), db, url)
    assert problem["code"] == "webhook_url_refused"
    assert problem["errors"][0]["loc"] == ["url"]


@pytest.mark.parametrize("url", [
    "http://93.184.215.14/hook\r\nX-Injected: 1",  # CR LF: urlsplit drops them silently
    "http://93.184.215.14/a\tb",
    " http://93.184.215.14/hook",
    "http://93.184.215.14/hook\n",
    "http://93.184.215.14/a b",
    "http://93.184.215.14/a\x7fb",
])
async def test_whitespace_and_control_characters_are_refused(client, make_user, db, url) -> None:  # type: ignore[no-untyped-def]
    """Otherwise the endpoint shows one URL and the worker requests another (the characters
    dropped or percent-encoded on the way)."""
    problem = await _refused(client, await make_user("admin"), db, url)
    assert problem["code"] == "webhook_url_refused"


async def test_port_zero_is_refused_not_sent_to_port_80(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    problem = await _refused(client, await make_user("admin"), db, "http://93.184.215.14:0/x")
    assert problem["code"] == "webhook_url_refused"


ENDPOINTS = 9


async def test_fan_out_of_a_backlog_to_many_endpoints_is_not_one_oversized_statement(app_with, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """asyncpg takes at most 32767 parameters per statement: 9 endpoints x 500 events x 8
    columns exceed it, and a fan-out that fails each sweep stops every webhook for good."""
    async with app_with(webhook_allow_private=True) as app:
        client, admin = app.test_client(), await make_user("admin")
        for n in range(ENDPOINTS):
            response = await client.post("/webhooks", headers=admin.headers, json={
                "url": f"http://127.0.0.1:9/{n}", "events": ["*"]})
            assert response.status_code == 201
        async with db.transaction() as session:  # a backlog: the workers were away
            await session.execute(insert(TaskEvent), [
                {"type": "task.created", "task_id": n, "audience": [], "data": {"id": n},
                 "changes": {}, "created_at": utcnow()} for n in range(1, 501)])
        assert await fan_out(app.extensions[EXTENSION_KEY].db) == ENDPOINTS * 500
    async with db.transaction(write=False) as session:
        assert await session.scalar(select(func.count(WebhookDelivery.id))) == ENDPOINTS * 500


async def test_an_internationalised_host_is_sent_in_its_ascii_form(monkeypatch, make_settings, receiver_process) -> None:  # type: ignore[no-untyped-def]
    """Host and SNI take the IDNA form; the name as typed is not ASCII, and httpx cannot
    encode it in a header, so every delivery to such a URL used to fail."""
    asked: list[str] = []

    async def to_loopback(target: Any) -> list[Any]:
        asked.append(target.host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(webhook_urls, "resolve", to_loopback)
    settings = make_settings(webhook_allow_private=True)
    async with new_client(settings) as client:
        url = f"http://Bücher.example:{receiver_process.port}/ok"
        attempt = await send(client, settings, url=url, msg_id="1", body=b"{}",
                             secrets=[new_secret()])
    assert attempt.ok, attempt
    assert asked == ["xn--bcher-kva.example"]  # what DNS is asked
    (request,) = receiver_process.requests()
    assert request["headers"]["Host"] == f"xn--bcher-kva.example:{receiver_process.port}"


async def test_two_rotations_at_once_both_hand_out_a_secret_that_signs(app_with, make_user, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each rotation answers a secret: both must be among the (at most two) that sign, or an
    admin installs one that never verifies. PostgreSQL reads committed: two rotations read the
    same current secret unless the row is locked (the pause makes them overlap every time)."""
    read = webhooks._endpoint

    async def slow_read(*args: Any, **kwargs: Any) -> Any:
        endpoint = await read(*args, **kwargs)
        await asyncio.sleep(0.2)
        return endpoint

    monkeypatch.setattr(webhooks, "_endpoint", slow_read)
    async with app_with(webhook_allow_private=True) as app:
        client, admin = app.test_client(), await make_user("admin")
        created = await client.post("/webhooks", headers=admin.headers,
                                    json={"url": "http://127.0.0.1:9/x", "events": ["*"]})
        path = f"/webhooks/{(await created.get_json())['id']}/rotate"
        answers = await asyncio.gather(*(client.post(path, headers=admin.headers)
                                         for _ in range(2)))
        handed = {(await answer.get_json())["secret"] for answer in answers}
    async with db.transaction(write=False) as session:
        endpoint = (await session.scalars(select(WebhookEndpoint))).one()
    assert len(handed) == 2
    assert handed == {endpoint.secret, endpoint.previous_secret}


async def test_a_410_from_the_old_url_does_not_disable_the_url_the_admin_just_set(app_with, make_user, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The receiver at the old URL answers 410 while the admin moves the endpoint to a new
    one: the endpoint stays enabled, and the delivery is retried (to the new URL)."""
    async with app_with(webhook_allow_private=True, webhook_retry_schedule=[60]) as app:
        client, admin = app.test_client(), await make_user("admin")
        created = await (await client.post("/webhooks", headers=admin.headers, json={
            "url": "http://127.0.0.1:9/old", "events": ["*"]})).get_json()
        await client.post("/tasks", headers=admin.headers, json={"title": "moved"})

        async def gone_while_moved(*_args: Any, **_kwargs: Any) -> Attempt:
            moved = await client.put(f"/webhooks/{created['id']}", headers=admin.headers,
                                     json={"url": "http://127.0.0.1:9/new"})
            assert moved.status_code == 200
            return Attempt(410, "HTTP 410", 3)

        monkeypatch.setattr(webhook_delivery, "send", gone_while_moved)
        state = app.extensions[EXTENSION_KEY]
        async with new_client(state.settings) as http:
            assert dict(await webhook_delivery.sweep(state.db, state.settings, http)) == {
                "retry": 1, "recorded": 1}
        shown = await (await client.get(f"/webhooks/{created['id']}",
                                        headers=admin.headers)).get_json()
    assert shown["enabled"] is True and shown["disabled_reason"] is None
    async with db.transaction(write=False) as session:
        delivery = (await session.scalars(select(WebhookDelivery))).one()
    assert delivery.status == "pending" and delivery.last_status_code == 410


async def test_an_event_logged_while_enabled_is_sent_after_a_disable_and_enable(app_with, make_user, receiver_process) -> None:  # type: ignore[no-untyped-def]
    """The workers turn events into deliveries a sweep later (or much later, when they are
    down). An endpoint disabled before they got there, then enabled again, starts at the
    log's head: the event it was enabled for must have been recorded by then, not skipped."""
    async with app_with(webhook_allow_private=True) as app:
        client, admin = app.test_client(), await make_user("admin")
        created = await (await client.post("/webhooks", headers=admin.headers, json={
            "url": receiver_process.url("/ok"), "events": ["*"]})).get_json()
        task = await (await client.post("/tasks", headers=admin.headers,
                                        json={"title": "while enabled"})).get_json()
        path = f"/webhooks/{created['id']}"
        await client.put(path, headers=admin.headers, json={"enabled": False})
        await client.post("/tasks", headers=admin.headers, json={"title": "while disabled"})
        await client.put(path, headers=admin.headers, json={"enabled": True})
        state = app.extensions[EXTENSION_KEY]
        async with new_client(state.settings) as http:
            await webhook_delivery.sweep(state.db, state.settings, http)
    sent = [json.loads(r["body"])["data"]["title"] for r in receiver_process.requests()]
    assert sent == [task["title"]]


async def test_an_unreadable_retry_after_is_ignored_not_an_error(app_with, make_user, db, receiver_process) -> None:  # type: ignore[no-untyped-def]
    """`²` is a digit to str.isdigit but not to float(): the answer (503) must still be what
    the delivery shows, retried on the schedule."""
    async with app_with(webhook_allow_private=True, webhook_retry_schedule=[60]) as app:
        client, admin = app.test_client(), await make_user("admin")
        await client.post("/webhooks", headers=admin.headers, json={
            "url": receiver_process.url("/status/503?retry_after=%C2%B2"), "events": ["*"]})
        await client.post("/tasks", headers=admin.headers, json={"title": "odd header"})
        state = app.extensions[EXTENSION_KEY]
        async with new_client(state.settings) as http:
            outcome = await webhook_delivery.sweep(state.db, state.settings, http)
    assert dict(outcome) == {"retry": 1, "recorded": 1}
    async with db.transaction(write=False) as session:
        delivery = (await session.scalars(select(WebhookDelivery))).one()
    assert delivery.last_status_code == 503 and delivery.last_error.startswith("HTTP 503")


@pytest.fixture
def a_example_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for a.example only (trusted by the test's client)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "a.pem", tmp_path / "a.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=a.example", "-addext",
                    "subjectAltName=DNS:a.example"], check=True, capture_output=True)
    return cert, key


async def test_https_to_another_name_on_the_same_address_verifies_its_own_certificate(monkeypatch, make_settings, a_example_cert) -> None:  # type: ignore[no-untyped-def]
    """Connections are pooled by the address connected to, and SNI is not part of that key:
    a connection verified for a.example was reused for b.example on the same address, so
    b.example's payload went out under a certificate never checked for it (a spoofed DNS
    answer pointing b.example at a.example's server got the data; a CDN answers 421)."""
    cert, key = a_example_cert
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    hosts: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode().split("\r\n")
                fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                hosts.append(fields["host"])
                await reader.readexactly(int(fields.get("content-length", 0)))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]

    async def to_loopback(_target: Any) -> list[Any]:
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(webhook_urls, "resolve", to_loopback)
    trusted = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(httpx, "AsyncClient", functools.partial(httpx.AsyncClient, verify=trusted))
    settings = make_settings(webhook_allow_private=True)
    try:
        async with new_client(settings) as client:
            first, second = [await send(client, settings, url=f"https://{name}:{port}/hook",
                                        msg_id="1", body=b"{}", secrets=[new_secret()])
                             for name in ("a.example", "b.example")]
    finally:
        server.close()
    assert first.ok, first
    assert not second.ok and "CERTIFICATE_VERIFY_FAILED" in (second.error or ""), second
    assert hosts == [f"a.example:{port}"]


async def test_a_failed_claim_does_not_cut_short_the_sends_in_flight(app_with, make_user, db, monkeypatch, receiver_process) -> None:  # type: ignore[no-untyped-def]
    """A claim that fails (the database locked for longer than its timeout, e.g. by the
    nightly maintenance) used to cancel every send in flight: released uncounted after the
    receiver had the request, each was sent again. They finish and are recorded now."""
    claim = webhook_delivery._claim
    calls = 0

    async def fails_after_the_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("database is locked")
        return await claim(*args, **kwargs)

    async with app_with(webhook_allow_private=True) as app:
        client, admin = app.test_client(), await make_user("admin")
        for path in ("/ok", "/slow"):  # the fast one frees a slot: the next claim fails
            await client.post("/webhooks", headers=admin.headers, json={
                "url": receiver_process.url(path), "events": ["*"]})
        await client.post("/tasks", headers=admin.headers, json={"title": "slow one"})
        monkeypatch.setattr(webhook_delivery, "_claim", fails_after_the_first)
        state = app.extensions[EXTENSION_KEY]
        async with new_client(state.settings) as http:
            with pytest.raises(OSError, match="locked"):
                await webhook_delivery.sweep(state.db, state.settings, http)
    async with db.transaction(write=False) as session:
        deliveries = list(await session.scalars(select(WebhookDelivery)))
    assert [(d.status, d.attempts) for d in deliveries] == [("delivered", 1)] * 2
    assert len(receiver_process.requests("/slow")) == 1


async def test_a_refused_name_does_not_tell_its_internal_addresses(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Otherwise POST /webhooks is a DNS lookup into the service's own network: an admin of
    the app learns which internal names exist and the addresses they have."""
    problem = await _refused(client, await make_user("admin"), db, "http://localhost:8080/x")
    assert problem["code"] == "webhook_url_refused"
    assert "127.0.0.1" not in json.dumps(problem)
    assert "'localhost' resolves to a loopback, private" in problem["detail"]


async def test_a_repeated_star_is_taken_once_like_any_repeated_type(client, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    response = await client.post("/webhooks", headers=admin.headers,
                                 json={"url": "https://93.184.215.14/x", "events": ["*", "*"]})
    assert response.status_code == 201, await response.get_data(as_text=True)
    assert (await response.get_json())["events"] == ["*"]


async def test_an_event_logged_before_a_change_of_events_is_sent_as_subscribed_then(app_with, make_user, receiver_process) -> None:  # type: ignore[no-untyped-def]
    async with app_with(webhook_allow_private=True) as app:
        client, admin = app.test_client(), await make_user("admin")
        created = await (await client.post("/webhooks", headers=admin.headers, json={
            "url": receiver_process.url("/ok"), "events": ["task.created"]})).get_json()
        await client.post("/tasks", headers=admin.headers, json={"title": "subscribed"})
        await client.put(f"/webhooks/{created['id']}", headers=admin.headers,
                         json={"events": ["task.deleted"]})
        await client.post("/tasks", headers=admin.headers, json={"title": "not any more"})
        state = app.extensions[EXTENSION_KEY]
        async with new_client(state.settings) as http:
            await webhook_delivery.sweep(state.db, state.settings, http)
    sent = [json.loads(r["body"])["data"]["title"] for r in receiver_process.requests()]
    assert sent == ["subscribed"]
