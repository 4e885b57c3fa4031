"""Snapshot the host's network state before .ci/image starts its dockerd, and undo what that
dockerd changed afterwards (pass or fail).

    python3 .ci/netstate.py snapshot FILE   # before dockerd starts
    python3 .ci/netstate.py restore FILE    # after it stopped: exit 1 if anything is left

dockerd leaves behind, after it stops: its iptables chains (DOCKER, DOCKER-USER,
DOCKER-ISOLATION-STAGE-*) and the rules that jump to them or name its bridges (docker0,
br-<id>), a FORWARD policy of DROP, net.ipv4.ip_forward=1 and the docker0 bridge. Only those
are undone: a rule or link that is not docker's stays, whoever added it meanwhile. A table
docker created (iptables-nft) is deleted with nft when nft is there, and otherwise left empty
with ACCEPT policies (the same as no table).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

DOCKERS = re.compile(r"DOCKER|\bdocker0\b|\bbr-[0-9a-f]{12}\b")
DOCKER_LINK = re.compile(r"^(docker0|br-[0-9a-f]{12}|veth[0-9a-f]{7})$")
SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables",
           "net.bridge.bridge-nf-call-ip6tables")
TOOLS = {"iptables": "ip", "ip6tables": "ip6"}  # iptables tool -> nft family


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout  # noqa: S603


def tables(tool: str) -> dict[str, list[str]]:
    """`<tool>-save` as {table: lines} (no comments, no counters)."""
    if shutil.which(f"{tool}-save") is None:
        return {}
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in _run(f"{tool}-save").splitlines():
        line = re.sub(r" \[\d+:\d+\]$", "", line.rstrip())
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = out.setdefault(line[1:], [])
        elif line != "COMMIT":
            current.append(line)
    return out


def links() -> list[str]:
    names = []
    for line in _run("ip", "-o", "link", "show").splitlines():
        name = line.split(": ", 2)[1].split("@", 1)[0]
        names.append(name)
    return sorted(names)


def sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        path = Path("/proc/sys") / key.replace(".", "/")
        if path.exists():
            values[key] = path.read_text().strip()
    return values


def snapshot() -> dict[str, Any]:
    return {"tables": {tool: tables(tool) for tool in TOOLS}, "links": links(),
            "sysctl": sysctls()}


def _cleaned(lines: list[str], before: list[str] | None) -> list[str]:
    """A table's lines without docker's chains and rules, built-in policies as before."""
    policies = {}
    for line in before or []:
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            policies[name] = policy
    kept = []
    for line in lines:
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            if name.startswith("DOCKER"):
                continue
            if policy != "-":  # a built-in chain
                line = f":{name} {policies.get(name, 'ACCEPT')}"
        elif DOCKERS.search(line) and line not in (before or []):
            continue
        kept.append(line)
    return kept


def restore(saved: dict[str, Any]) -> list[str]:
    """Undo docker's changes; returns what still differs from the snapshot."""
    before_tables: dict[str, dict[str, list[str]]] = saved["tables"]
    for name in sorted(set(links()) - set(saved["links"])):
        if DOCKER_LINK.match(name):
            _run("ip", "link", "delete", name)
            print(f"network: deleted link {name}")
    for tool, family in TOOLS.items():
        before = before_tables.get(tool, {})
        for table, lines in tables(tool).items():
            cleaned = _cleaned(lines, before.get(table))
            if cleaned != lines:
                text = f"*{table}\n" + "\n".join(cleaned) + "\nCOMMIT\n"
                subprocess.run([f"{tool}-restore"], input=text, text=True, check=False)  # noqa: S603
                print(f"network: removed docker's chains and rules from {tool} {table}")
            if table not in before and shutil.which("nft") and not _has_rules(cleaned):
                _run("nft", "delete", "table", family, table)
                print(f"network: deleted the {tool} table {table} (docker created it)")
    for key, value in saved["sysctl"].items():
        path = Path("/proc/sys") / key.replace(".", "/")
        if path.exists() and path.read_text().strip() != value:
            path.write_text(value + "\n")
            print(f"network: {key} back to {value}")
    return differences(saved)


def differences(saved: dict[str, Any]) -> list[str]:
    now = snapshot()
    left = []
    for tool in TOOLS:
        before = saved["tables"][tool]
        for table, lines in now["tables"][tool].items():
            same = lines == before[table] if table in before else not _has_rules(lines)
            if not same:
                left.append(f"{tool} table {table} differs from before")
    extra = sorted(set(now["links"]) - set(saved["links"]))
    left += [f"link {name} was not there before" for name in extra if DOCKER_LINK.match(name)]
    left += [f"{key} is {value}, was {saved['sysctl'][key]}"
             for key, value in now["sysctl"].items() if saved["sysctl"].get(key, value) != value]
    return left


def _has_rules(lines: list[str]) -> bool:
    """Anything but built-in chains with an ACCEPT policy (a table that filters nothing)."""
    return any(not line.startswith(":") or not line.endswith(" ACCEPT") for line in lines)


def main() -> int:
    verb, path = sys.argv[1], Path(sys.argv[2])
    if verb == "snapshot":
        path.write_text(json.dumps(snapshot(), indent=1))
        return 0
    left = restore(json.loads(path.read_text()))
    for item in left:
        print(f"network: NOT restored: {item}")
    if not left:
        print("network: as before dockerd started (iptables, links, sysctls)")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
