# taskapi container image: the project is built into a venv in one stage and only that venv
# plus the runtime files are copied into the final slim image.
#
#   docker build -t taskapi .
#   docker run --rm -p 8000:8000 -e TASKAPI_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(48))')" taskapi
#   docker run --rm taskapi taskapi db upgrade        # any other command replaces CMD
#
# scripts/check_docker_steps.sh repeats these steps without Docker: keep the two in step.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The build context is trimmed by .dockerignore (no .git, .venv, var/, tests, .env ...).
COPY . .
# A regular (non-editable) install: pip builds the project's wheel (PEP 517, hatchling) and
# installs it with its dependencies (uvloop, asyncpg, hypercorn ...) into /opt/venv.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install .

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG UID=10001
ARG GID=10001

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TASKAPI_ENV=production \
    TASKAPI_DATA_DIR=/data \
    TASKAPI_MIGRATIONS_DIR=/app/migrations \
    WEB_CONCURRENCY=2

RUN groupadd --system --gid "${GID}" taskapi \
    && useradd --system --uid "${UID}" --gid taskapi --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin taskapi \
    && mkdir -p /data \
    && chown taskapi:taskapi /data \
    && chmod 0750 /data

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Code and config stay owned by root: the service user can read them, not change them.
COPY asgi.py settings.py worker.py alembic.ini hypercorn.toml ./
COPY migrations ./migrations

# Numeric, so a runtime can tell it is not root (Kubernetes runAsNonRoot).
USER ${UID}:${GID}
VOLUME ["/data"]
EXPOSE 8000

# No curl in the slim image: python's urllib raises (exit 1) on a refused connection or non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# taskapi's own supervisor runs the hypercorn workers with hypercorn.toml's settings (bind,
# timeouts, access log format) and WEB_CONCURRENCY workers; on docker's SIGTERM it drains every
# worker's in-flight requests (hypercorn's own runner resets those of the slower workers) and
# serves /metrics summed over all of them. Exec form: taskapi is PID 1 and gets the signal.
CMD ["taskapi", "serve", "--config", "hypercorn.toml", "--no-worker"]
