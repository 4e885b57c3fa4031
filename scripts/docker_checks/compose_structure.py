"""Structural checks of docker-compose.yml: the services, their dependencies, environment,
commands, healthchecks, images, ports and volumes, and that TASKAPI_TRUSTED_PROXIES is the
subnet of the one network nginx shares with the api (and nothing else sits on).

Usage: compose_structure.py COMPOSE_FILE RESOLVED_JSON (run by
scripts/check_docker_steps.sh, check "compose"). RESOLVED_JSON: the file as
`docker compose config --format json` resolved it; when empty, the raw YAML is read with
PyYAML and its ${VAR}, ${VAR:-default} and ${VAR:?message} interpolated from the
environment. TASKAPI_SECRET_KEY must be set. Prints the problems and exits 1 if any.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any


def load(path: str, resolved: str) -> dict[str, Any]:
    if resolved:
        with open(resolved) as fh:
            doc: dict[str, Any] = json.load(fh)
        return doc
    import yaml

    with open(path) as fh:
        raw = fh.read()

    def interp(m: re.Match[str]) -> str:  # ${VAR}, ${VAR:-default}, ${VAR:?msg}
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        val = os.environ.get(name)
        if op == ":?" and not val:
            raise SystemExit(f"required variable {name} missing: {arg}")
        return val if val else (arg if op == ":-" else "")

    raw = re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", interp, raw)
    doc = yaml.safe_load(raw)
    assert "x-taskapi-env" in doc, "no x-taskapi-env anchor block"
    return doc


def words(cmd: Any) -> str:
    """A compose command (a list or a string) as one string."""
    return " ".join(cmd if isinstance(cmd, list) else [cmd])


def check(doc: dict[str, Any]) -> tuple[list[str], str]:
    """(the problems found, TASKAPI_TRUSTED_PROXIES of the api)"""
    errors: list[str] = []

    def need(cond: object, msg: str) -> None:
        if not cond:
            errors.append(msg)

    svcs = doc.get("services", {})
    for name in ("api", "worker", "redis", "postgres", "nginx", "mailpit"):
        need(name in svcs, f"service {name} missing")

    def env(s: str) -> Any:
        e = svcs.get(s, {}).get("environment", {})
        if isinstance(e, list):
            e = dict(x.split("=", 1) for x in e)
        return e

    def deps(s: str) -> dict[str, str]:
        d = svcs.get(s, {}).get("depends_on", {})
        if isinstance(d, dict):
            return {k: (v or {}).get("condition", "service_started") for k, v in d.items()}
        return {k: "service_started" for k in d}

    api = svcs.get("api", {})
    need("container_name" not in api, "api has container_name (cannot scale)")
    need(not api.get("ports"), "api publishes a host port (cannot scale; nginx is the entry)")
    need(api.get("build") is not None, "api is not built from the Dockerfile")
    for s in ("api", "worker"):
        d = deps(s)
        need(d.get("postgres") == "service_healthy", f"{s}: depends_on postgres service_healthy")
        need(d.get("redis") == "service_healthy", f"{s}: depends_on redis service_healthy")
        if "migrate" in svcs:
            need(d.get("migrate") == "service_completed_successfully",
                 f"{s}: depends_on migrate completed")
        e = env(s)
        need(e.get("TASKAPI_SMTP_HOST") == "mailpit" and str(e.get("TASKAPI_SMTP_PORT")) == "1025"
             and str(e.get("TASKAPI_SMTP_STARTTLS")).lower() == "false",
             f"{s}: SMTP not mailpit:1025 without STARTTLS")
        need(e.get("TASKAPI_SECRET_KEY") == os.environ["TASKAPI_SECRET_KEY"],
             f"{s}: SECRET_KEY not from TASKAPI_SECRET_KEY")
        need(str(e.get("TASKAPI_DATABASE_URL", "")).startswith("postgresql+asyncpg://"),
             f"{s}: DATABASE_URL")
        need(str(e.get("TASKAPI_REDIS_URL", "")).startswith("redis://redis:"), f"{s}: REDIS_URL")
        need(e.get("TASKAPI_ENV") == "production", f"{s}: TASKAPI_ENV")
    api_cmd = api.get("command")
    if "migrate" not in svcs:
        need(api_cmd and "upgrade" in words(api_cmd),
             "no migrate service and api does not run db upgrade")
    else:
        m = svcs["migrate"].get("command")
        need(m and "upgrade" in words(m), "migrate does not run taskapi db upgrade")
    w = svcs.get("worker", {}).get("command")
    need(w and "worker" in words(w), "worker command is not taskapi worker")
    need(svcs.get("worker", {}).get("healthcheck", {}).get("disable") is True,
         "worker inherits the HTTP healthcheck")
    for s in ("redis", "postgres"):
        need(svcs.get(s, {}).get("healthcheck", {}).get("test"), f"{s}: no healthcheck")
    need("pg_isready" in json.dumps(svcs.get("postgres", {}).get("healthcheck", {})),
         "postgres healthcheck is not pg_isready")
    for s, prefix in (("redis", "redis:7-alpine"), ("postgres", "postgres:16-alpine"),
                      ("nginx", "nginx:1.27-alpine"), ("mailpit", "axllent/mailpit")):
        need(str(svcs.get(s, {}).get("image", "")).startswith(prefix), f"{s} image")
    ports = json.dumps(svcs.get("nginx", {}).get("ports", []))
    need(re.search(r'8080', ports) and re.search(r'(:80"|"target": 80\b)', ports),
         f"nginx does not publish 8080:80: {ports}")
    need("8025" in json.dumps(svcs.get("mailpit", {}).get("ports", [])),
         "mailpit UI 8025 not published")
    need("deploy/nginx.conf" in json.dumps(svcs.get("nginx", {}).get("volumes", [])),
         "nginx.conf not mounted")
    vols = json.dumps(svcs.get("postgres", {}).get("volumes", []))
    need(any(v in vols for v in doc.get("volumes", {})), "postgres data not on a named volume")
    # TRUSTED_PROXIES: the network that nginx shares with api, and nothing else sits on it.
    tp = str(env("api").get("TASKAPI_TRUSTED_PROXIES", ""))

    def nets_of(s: str) -> set[str]:
        n = svcs.get(s, {}).get("networks") or ["default"]
        return set(n if isinstance(n, list) else n.keys())

    shared = nets_of("api") & nets_of("nginx")
    need(len(shared) == 1, f"api and nginx should share exactly one network, got {shared}")
    for n in shared:
        network = doc.get("networks", {}).get(n, {}) or {}
        subnets = [c.get("subnet") for c in network.get("ipam", {}).get("config", [])]
        need(tp in subnets, f"TRUSTED_PROXIES {tp!r} is not the {n} network's subnet {subnets}")
        others = [s for s in svcs if s not in ("api", "nginx") and n in nets_of(s)]
        need(not others, f"services other than nginx on the trusted network {n}: {others}")
    return errors, tp


def main() -> None:
    doc = load(sys.argv[1], sys.argv[2])
    errors, tp = check(doc)
    if errors:
        print("\n".join("  - " + e for e in errors))
        sys.exit(1)
    print(f"services: {', '.join(sorted(doc.get('services', {})))}; trusted proxies: {tp}")


if __name__ == "__main__":
    main()
