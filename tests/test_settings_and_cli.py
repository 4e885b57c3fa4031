"""Settings refusal, the dev secret, and the CLI run as real processes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from taskapi.config import ConfigError, Settings, load_settings
from tests.support.processes import cli_env, run_cli, serve


@pytest.mark.parametrize("secret", [None, "too-short"])
@pytest.mark.parametrize("command", [["serve"], ["worker"], ["db", "upgrade"]])
def test_production_refuses_weak_secret(
    tmp_path: Path, secret: str | None, command: list[str]
) -> None:
    env = cli_env(tmp_path, TASKAPI_ENV="production")
    env.pop("TASKAPI_SECRET_KEY")
    if secret:
        env["TASKAPI_SECRET_KEY"] = secret
    result = run_cli(*command, env=env, timeout=30)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "TASKAPI_SECRET_KEY" in lines[0] and "Traceback" not in result.stderr


def test_asgi_import_refuses_weak_secret_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = cli_env(tmp_path, TASKAPI_ENV="production", TASKAPI_SECRET_KEY="short")
    result = subprocess.run([sys.executable, "-c", "import asgi"], env=env, capture_output=True,
                            text=True, cwd=Path(__file__).parent.parent, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "TASKAPI_SECRET_KEY" in result.stderr


def test_served_app_freezes_its_startup_heap(tmp_path: Path, redis_url: str) -> None:
    """asgi:app (what `taskapi serve` and hypercorn load) moves its startup objects out of
    the collector's reach, so old-generation collections stay short under load, and
    collects the young generation less often, so they stay rare."""
    import subprocess
    import sys

    code = ("import asyncio, gc, asgi\n"
            "async def main():\n"
            "    before = gc.get_freeze_count()\n"
            "    await asgi.app.startup()\n"
            "    try:\n"
            "        print(before, gc.get_freeze_count(), gc.get_threshold()[0])\n"
            "    finally:\n"
            "        await asgi.app.shutdown()\n"
            "asyncio.run(main())\n")
    env = cli_env(tmp_path, TASKAPI_REDIS_URL=redis_url,
                  TASKAPI_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, cwd=Path(__file__).parent.parent, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    before, after, young = map(int, result.stdout.split())
    assert before == 0 and after > 50_000  # the imports alone are some 100k objects
    assert young == 10_000  # the young generation's threshold, not the default 700


def test_bad_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKAPI_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigError, match="TASKAPI_TIMEZONE"):
        load_settings(_env_file=None, data_dir=tmp_path)


def test_a_webhook_claim_shorter_than_its_send_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TASKAPI_WEBHOOK_CLAIM_TIMEOUT"):
        load_settings(_env_file=None, data_dir=tmp_path, webhook_timeout=30,
                      webhook_claim_timeout=30)


def test_development_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings(_env_file=None, env="development", data_dir=tmp_path).signing_key()
    second = Settings(_env_file=None, env="development", data_dir=tmp_path).signing_key()
    assert first == second and len(first) >= 32
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_production_accepts_long_secret(tmp_path: Path) -> None:
    key = "k" * 40
    settings = Settings(_env_file=None, env="production", data_dir=tmp_path, secret_key=key)
    assert settings.signing_key() == key
    assert not (tmp_path / "secret_key").exists()


def test_database_url_driver_is_picked(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url="postgresql://u@h/db")
    assert settings.sqlalchemy_url == "postgresql+asyncpg://u@h/db"
    default = Settings(_env_file=None, data_dir=tmp_path)
    assert default.sqlalchemy_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/taskapi.db"


def test_cli_db_upgrade_create_admin_and_jobs(tmp_path: Path, database_url: str) -> None:
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url)
    assert run_cli("db", "upgrade", env=env).returncode == 0
    args = ["create-admin", "--email", "Boss@Example.test", "--username", "boss",
            "--password", "correct horse"]
    first = run_cli(*args, env=env)
    assert first.returncode == 0 and "created" in first.stdout, first.stderr
    again = run_cli(*args, env=env)
    assert again.returncode == 0 and "already present" in again.stdout
    assert first.stdout.split("id=")[1].split()[0] == again.stdout.split("id=")[1].split()[0]
    bad = run_cli("create-admin", "--email", "nope", "--username", "x1x", "--password", "12345678",
                  env=env)
    assert bad.returncode == 2 and "email" in bad.stderr
    listed = run_cli("jobs", "list", env=env)
    assert listed.returncode == 0 and "db_maintenance" in listed.stdout
    ran = run_cli("jobs", "run", "db_maintenance", env=env)
    assert ran.returncode == 0 and ran.stdout.startswith("db_maintenance:")
    unknown = run_cli("jobs", "run", "no_such_job", env=env)
    assert unknown.returncode == 2 and "db_maintenance" in unknown.stderr


def test_serve_with_embedded_redis_shared_by_two_workers(tmp_path: Path) -> None:
    """One `taskapi serve --workers 2` on defaults: both workers share one embedded Redis,
    which stops with the server."""
    data = tmp_path / "data"
    env = cli_env(data, TASKAPI_ENV="development")
    with serve(env, "--workers", "2") as base:
        with httpx.Client(base_url=base) as http:
            for _ in range(20):  # new connections land on both workers
                response = http.get("/readyz", headers={"Connection": "close"})
                assert response.json()["checks"] == {"database": "ok", "redis": "ok"}
        assert (data / "redis.sock").exists()
        started = re.search(r"pid=(\d+), just started", (data / "redis.log").read_text())
        assert started is not None
        redis_pid = int(started.group(1))
        assert Path(f"/proc/{redis_pid}").exists()
    assert not (data / "redis.sock").exists()
    assert not Path(f"/proc/{redis_pid}").exists()  # the server stopped with `serve`
