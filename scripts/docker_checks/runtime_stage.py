"""Replay the Dockerfile's last (runtime) stage into a temp "image root": its ENV, WORKDIR
and COPY lines (not COPY --from), with the image's absolute paths (/app, /data, /opt/venv)
moved under ROOT.

Usage: runtime_stage.py DOCKERFILE CONTEXT ROOT (run by scripts/check_docker_steps.sh,
check "image"). Writes the image's environment to ROOT/../image.env (one NAME=value a line)
and prints shell assignments for the caller to source: __WORKDIR, __HEALTHCHECK and __CMD
(JSON of the exec forms), __COPIES, and __MISSING (COPY sources not in the context).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def instructions(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    lines, buf = [], ""
    with open(dockerfile, encoding="utf-8") as fh:
        for raw in fh:
            s = raw.rstrip("\n")
            if not buf and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if s.endswith("\\"):
                buf += s[:-1] + " "
                continue
            lines.append((buf + s).strip())
            buf = ""
    return lines


def final_stage(lines: list[str]) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, after its FROM."""
    stages: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, str]] | None = None
    for line in lines:
        instr, _, rest = line.partition(" ")
        if instr.upper() == "FROM":
            cur = []
            stages.append(cur)
        elif cur is not None:
            cur.append((instr.upper(), rest.strip()))
    return stages[-1]


def main() -> None:
    dockerfile, ctx, root = sys.argv[1:4]

    def remap(value: str) -> str:  # absolute image paths -> inside the temp image root
        return re.sub(r"(?<![\w/])/(app|data|opt/venv)\b",
                      lambda m: root + "/" + m.group(1), value)

    env: dict[str, str] = {}
    workdir = "/"
    copies: list[tuple[list[str], str]] = []
    for instr, rest in final_stage(instructions(dockerfile)):
        if instr == "ENV":
            for tok in shlex.split(rest):
                k, _, v = tok.partition("=")
                v = v.replace("$PATH", DEFAULT_PATH).replace("${PATH}", DEFAULT_PATH)
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
        into_dir = dest.endswith("/") or len(sources) > 1
        for s in sources:
            sp = os.path.join(ctx, s)
            if not os.path.exists(sp):
                missing.append(s)
                continue
            if os.path.isdir(sp):
                target = (dest_root if not dest.endswith("/")
                          else os.path.join(dest_root, os.path.basename(s)))
                shutil.copytree(sp, target, dirs_exist_ok=True)
            else:
                os.makedirs(dest_root if into_dir else os.path.dirname(dest_root), exist_ok=True)
                shutil.copy2(sp, os.path.join(dest_root, s) if into_dir else dest_root)
    os.makedirs(root + "/data", exist_ok=True)
    env["__WORKDIR"] = remap(root + workdir) if not workdir.startswith(root) else workdir
    meta = {k: env.pop(k) for k in [k for k in env if k.startswith("__")]}
    meta["__COPIES"] = " ".join(f"{' '.join(s)}->{d}" for s, d in copies)
    meta["__MISSING"] = " ".join(missing)
    with open(os.path.join(os.path.dirname(root), "image.env"), "w") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in env.items())
    for k, v in meta.items():
        print(f"{k}={shlex.quote(v)}")


if __name__ == "__main__":
    main()
