"""deploy/systemd: the units for a VM pass `systemd-analyze verify` (and its offline security
review), carry the same hardening, and agree with the app (stop timeouts, settings names)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from taskapi.config import Settings
from tests.support.processes import REPO

UNITS = REPO / "deploy" / "systemd"
NAMES = ["taskapi.service", "taskapi-worker.service", "taskapi-migrate.service"]
ANALYZE = shutil.which("systemd-analyze")
SYSTEM_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                     if (p / "multi-user.target").exists()), None)
needs_systemd = pytest.mark.skipif(ANALYZE is None or SYSTEM_UNITS is None,
                                   reason="systemd-analyze and systemd's units are not here")


def _service(name: str) -> dict[str, list[str]]:
    """The [Service] section: key -> values, in order."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file system root as the units expect it: systemd's own units, ours in /etc, and
    /opt/taskapi/venv/bin/taskapi (verify checks every command is an executable there)."""
    assert SYSTEM_UNITS is not None
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name in NAMES:
        shutil.copy(UNITS / name, etc / name)
    venv_bin = root / "opt/taskapi/venv/bin"
    venv_bin.mkdir(parents=True)
    shutil.copy(Path(sys.executable).with_name("taskapi"), venv_bin / "taskapi")  # pip's script
    return root


@needs_systemd
def test_units_pass_systemd_analyze_verify(root: Path) -> None:
    """Exit 0 and not one warning (verify only warns, exit 0, on an unknown key or a bad
    value: those lines would be ignored by systemd, hardening included)."""
    result = subprocess.run([str(ANALYZE), "verify", f"--root={root}", *NAMES],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


@needs_systemd
def test_units_verify_would_catch_a_typo(root: Path, tmp_path: Path) -> None:
    """The check above can fail: a misspelt hardening key is reported."""
    broken = tmp_path / "root"
    shutil.copytree(root, broken, symlinks=True)
    unit = broken / "etc/systemd/system/taskapi.service"
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystems=strict"))
    result = subprocess.run([str(ANALYZE), "verify", f"--root={broken}", "taskapi.service"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert "Unknown key 'ProtectSystems'" in result.stdout + result.stderr


@needs_systemd
@pytest.mark.parametrize("name", NAMES)
def test_units_are_well_hardened(root: Path, name: str) -> None:
    """systemd's offline security review: exposure at most 2.0 ("OK"; a plain unit is 9.6)."""
    result = subprocess.run([str(ANALYZE), "security", "--offline=yes", f"--root={root}", name],
                            capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.0, result.stdout


def test_units_share_user_data_dir_and_hardening() -> None:
    services = {name: _service(name) for name in NAMES}
    hardening = ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "ProtectHome",
                 "PrivateDevices", "CapabilityBoundingSet", "SystemCallFilter",
                 "RestrictAddressFamilies", "StateDirectory", "UMask", "User", "Group",
                 "EnvironmentFile", "Environment", "WorkingDirectory")
    api = services["taskapi.service"]
    assert api["NoNewPrivileges"] == ["yes"] and api["ProtectSystem"] == ["strict"]
    assert api["PrivateTmp"] == ["yes"] and api["User"] == ["taskapi"]
    # ProtectSystem=strict leaves the data dir writable: StateDirectory= is TASKAPI_DATA_DIR.
    assert api["StateDirectory"] == ["taskapi"]
    assert "TASKAPI_DATA_DIR=/var/lib/taskapi" in api["Environment"][0].split()
    assert api["EnvironmentFile"] == ["/etc/taskapi/taskapi.env"]
    for name, service in services.items():
        assert {k: service.get(k) for k in hardening} == {k: api.get(k) for k in hardening}, name


def test_stop_timeouts_outlast_the_graceful_stops() -> None:
    """systemd's SIGKILL must come after the app's own graceful stop: taskapi serve drains for
    graceful_timeout + 5 s; the worker's jobs get job_completion_wait."""
    from taskapi.ops.worker import WorkerSettings

    api, worker = _service("taskapi.service"), _service("taskapi-worker.service")
    graceful = tomllib.loads((REPO / "hypercorn.toml").read_text())["graceful_timeout"]
    assert int(api["TimeoutStopSec"][0]) > graceful + 5
    assert int(worker["TimeoutStopSec"][0]) > WorkerSettings.job_completion_wait
    for service in (api, worker):  # SIGTERM to the main process, which stops its children
        assert service["KillMode"] == ["mixed"] and service["KillSignal"] == ["SIGTERM"]
    assert "--no-worker" in api["ExecStart"][0].split()
    assert worker["ExecStart"][0].split()[1:] == ["worker"]


def test_environment_file_names_only_real_settings() -> None:
    """Every TASKAPI_ name in taskapi.env is a setting (a typo would be silently ignored)."""
    keys = [line.split("=", 1)[0].lstrip("# ").strip()
            for line in (UNITS / "taskapi.env").read_text().splitlines()
            if re.match(r"^#? ?[A-Z_]+=", line)]
    assert "TASKAPI_ENV" in keys and "TASKAPI_SECRET_KEY" in keys
    for key in keys:
        if key.startswith("TASKAPI_"):
            assert key.removeprefix("TASKAPI_").lower() in Settings.model_fields, key
        else:
            assert key == "WEB_CONCURRENCY", key
    assert "TASKAPI_DATA_DIR" not in keys  # the units' own: the one writable place
