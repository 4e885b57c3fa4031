"""Copy the Docker build context, as docker would send it: every file of SRC that the rules
of SRC/.dockerignore do not exclude (last matching rule wins), into DST.

Usage: build_context.py SRC DST (run by scripts/check_docker_steps.sh, check "image").
"""

from __future__ import annotations

import os
import re
import shutil
import sys


def compile_pattern(pat: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**/`, `**`, `*`, `?`, `[...]`, `\\x`."""
    out, i = "", 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pat.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pat.find("]", i)
            if j == -1:
                out += re.escape(c)
            else:
                out += "[" + pat[i + 1:j].replace("!", "^", 1) + "]"
                i = j
        elif c == "\\" and i + 1 < len(pat):
            out += re.escape(pat[i + 1])
            i += 1
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


def read_rules(src: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, pattern) per rule of src/.dockerignore, in file order."""
    rules = []
    path = os.path.join(src, ".dockerignore")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for raw in fh:
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                neg = line.startswith("!")
                pat = os.path.normpath(line[1:] if neg else line).lstrip("/")
                rules.append((neg, compile_pattern(pat)))
    return rules


def excluded(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """A rule matching the path or any of its parent directories decides; the last wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    result = False
    for neg, rx in rules:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


def copy_context(src: str, dst: str) -> int:
    rules = read_rules(src)
    has_neg = any(neg for neg, _ in rules)
    count = 0
    for dirpath, dirnames, filenames in os.walk(src):
        reldir = os.path.relpath(dirpath, src)
        reldir = "" if reldir == "." else reldir
        if not has_neg:  # with a `!` rule, an excluded directory may hold included files
            dirnames[:] = [d for d in dirnames if not excluded(os.path.join(reldir, d), rules)]
        for name in filenames:
            rel = os.path.join(reldir, name)
            if excluded(rel, rules):
                continue
            os.makedirs(os.path.join(dst, reldir), exist_ok=True)
            shutil.copy2(os.path.join(src, rel), os.path.join(dst, rel), follow_symlinks=False)
            count += 1
    return count


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    count = copy_context(src, dst)
    print(f"context: {count} files; top level: {' '.join(sorted(os.listdir(dst)))}")


if __name__ == "__main__":
    main()
