"""OpenAPI + our own Swagger UI (no external URL, assets load); CORS from settings."""

from __future__ import annotations

import re

from taskapi.app import create_app

URL_RE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*["']?([^"')\s>]+)""")


async def test_docs_page_has_no_external_url_and_assets_load(client) -> None:  # type: ignore[no-untyped-def]
    page = await (await client.get("/docs")).get_data(as_text=True)
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assets = URL_RE.findall(page)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        body = await response.get_data()
        assert len(body) > 100 or asset.endswith("init.js"), asset
    init = await (await client.get("/docs/init.js")).get_data(as_text=True)
    assert '"/openapi.json"' in init


async def test_quart_schema_cdn_pages_are_disabled(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/redocs", "/scalar"):
        assert (await client.get(path)).status_code == 404


async def test_openapi_is_31_with_bearer_scheme_and_no_mirror(client) -> None:  # type: ignore[no-untyped-def]
    spec = await (await client.get("/openapi.json")).get_json()
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "/healthz" in spec["paths"] and "/readyz" in spec["paths"]
    assert not [p for p in spec["paths"] if p.startswith("/api/v1") or "static" in p]
    # Every API operation documents the 503 a busy or unreachable database gives.
    status_update = spec["paths"]["/task/{task_id}/status"]["put"]["responses"]["503"]
    assert "Retry-After" in status_update["headers"]
    assert "503" not in spec["paths"]["/healthz"]["get"]["responses"]
    undocumented = [(path, method) for path, item in spec["paths"].items()
                    for method, operation in item.items()
                    if path not in ("/healthz", "/readyz", "/docs", "/openapi.json", "/metrics")
                    and "503" not in operation["responses"]]
    assert undocumented == []


async def test_cors_preflight_only_for_listed_origins(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(cors_origins="https://app.example.com,https://admin.example.com"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        headers = {"Access-Control-Request-Method": "GET"}
        ok = await client.options(
            "/healthz", headers={**headers, "Origin": "https://admin.example.com"}
        )
        assert ok.headers["Access-Control-Allow-Origin"] == "https://admin.example.com"
        evil = await client.options("/healthz", headers={**headers, "Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in evil.headers
        simple = await client.get("/healthz", headers={"Origin": "https://app.example.com"})
        assert simple.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert "X-Request-ID" in simple.headers["Access-Control-Expose-Headers"]


async def test_no_cors_headers_when_no_origins_configured(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers
