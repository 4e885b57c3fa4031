"""scale.py's measurements: the request shapes (every list filter and sort, search, deep
cursor pages, /stats, one task, /tasks/mine, the status update), each timed as single
sequential requests with httpx, and the table of the sizes side by side."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from run_info import log, median

WARMUP = 2
DEEP_PAGE = 100
GROWTH_TARGET = 3.0  # each read at the biggest size / at the smallest
WRITE_TARGET = 1.3  # the status update, counters included
DEEP_TARGET = 1.5  # a deep page / the first page of the same list, at the same size
MIX_TARGET = 0.8  # the mix's rps at the biggest size / at the smallest


@dataclass(frozen=True)
class Shape:
    """A row of the table: its label (the same at every size), the request, whose token."""

    label: str
    path: str
    who: str = "manager"  # or "employee"
    deep_of: str | None = None  # a deep page: the label of its first page


def shapes(employee_id: int, task_id: int, now: datetime | None = None) -> list[Shape]:
    """Every shape, for an employee id (their filters, /tasks/mine) and one task's id."""
    now = now or datetime.now(UTC)
    soon = (now + timedelta(days=5)).date().isoformat()
    later = (now + timedelta(days=30)).date().isoformat()
    x = employee_id
    out = [Shape("GET /stats", "/stats"), Shape("GET /tasks?limit=50", "/tasks?limit=50")]
    out += [Shape(f"sort={s}", f"/tasks?sort={s}")
            for s in ("created_at", "-created_at", "deadline", "-deadline", "status")]
    out += [Shape(label, f"/tasks?{query}") for label, query in (
        ("status=pending", "status=pending"),
        ("status=completed", "status=completed"),
        ("assigned_user_id=X", f"assigned_user_id={x}"),
        ("due_before=now+5d", f"due_before={soon}"),
        ("due_after=now+30d", f"due_after={later}"),
        ("q=zzz (no match)", "q=zzz"),
        ("q=customer (1/4)", "q=customer"),
        ("q=task 12345 (rare)", "q=task%2012345"),
        ("status=pending&sort=-deadline", "status=pending&sort=-deadline"),
        ("status=in-progress&sort=created_at", "status=in-progress&sort=created_at"),
        ("assigned_user_id=5&sort=deadline", "assigned_user_id=5&sort=deadline"),
        ("assigned_user_id=X&status=pending&sort=status",
         f"assigned_user_id={x}&status=pending&sort=status"),
        ("due_before=now+5d&sort=deadline", f"due_before={soon}&sort=deadline"),
        ("q=customer&sort=-deadline", "q=customer&sort=-deadline"),
        ("status=pending&q=zzz", "status=pending&q=zzz"),
    )]
    out += [Shape(f"page {DEEP_PAGE}: limit=50", "/tasks?limit=50",
                  deep_of="GET /tasks?limit=50"),
            Shape(f"page {DEEP_PAGE}: status=pending&sort=-deadline",
                  "/tasks?status=pending&sort=-deadline",
                  deep_of="status=pending&sort=-deadline"),
            Shape("GET /task/{id}", f"/task/{task_id}"),
            Shape("GET /tasks/mine (employee)", "/tasks/mine", who="employee")]
    return out


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _summary(times: list[float], statuses: list[int], items: int | None) -> dict[str, Any]:
    bad = [s for s in statuses if not 200 <= s < 300]
    return {"best_ms": round(min(times) * 1000, 3), "median_ms": round(median(times) * 1000, 3),
            "runs_ms": [round(t * 1000, 3) for t in times], "items": items,
            "statuses": sorted(set(statuses)), "non2xx": len(bad)}


def time_get(client: httpx.Client, path: str, token: str, repeats: int) -> dict[str, Any]:
    """WARMUP requests (their statuses counted too), then `repeats` timed ones."""
    statuses, times = [], []
    resp = None
    for i in range(WARMUP + repeats):
        t0 = time.perf_counter()
        resp = client.get(path, headers=_auth(token))
        elapsed = time.perf_counter() - t0
        statuses.append(resp.status_code)
        if i >= WARMUP:
            times.append(elapsed)
    assert resp is not None
    body = resp.json() if resp.status_code == 200 else None
    items = len(body) if isinstance(body, list) else None
    out = _summary(times, statuses, items)
    if out["non2xx"]:
        log(f"  {path}: non-2xx {out['statuses']}: {resp.text[:200]}")
    return out


def deep_path(client: httpx.Client, path: str, token: str, page: int) -> tuple[str, int]:
    """The path of the page-th page of a list (following Link rel=next), or of its last
    page when it has fewer; and the number of that page."""
    current, number = path, 1
    while number < page:
        resp = client.get(current, headers=_auth(token))
        resp.raise_for_status()
        nxt = resp.links.get("next", {}).get("url")
        if not nxt:
            break
        current, number = nxt, number + 1
    return current, number


def time_status_updates(client: httpx.Client, token: str, task_ids: list[int],
                        ) -> dict[str, Any]:
    """PUT /task/{id}/status on each task (WARMUP untimed first), each to a status it does
    not have (read by an untimed GET just before)."""
    cycle = ("pending", "in-progress", "completed")
    statuses, times = [], []
    for i, task_id in enumerate(task_ids):
        current = client.get(f"/task/{task_id}", headers=_auth(token))
        current.raise_for_status()
        new = cycle[(cycle.index(current.json()["status"]) + 1) % 3]
        t0 = time.perf_counter()
        resp = client.put(f"/task/{task_id}/status", json={"status": new},
                          headers=_auth(token))
        elapsed = time.perf_counter() - t0
        statuses.append(resp.status_code)
        if resp.status_code != 200:
            log(f"  PUT /task/{task_id}/status: {resp.status_code} {resp.text[:200]}")
        if i >= WARMUP:
            times.append(elapsed)
    out = _summary(times, statuses, None)
    out["updates"] = len(times)
    return out


def measure_size(base: str, tokens: dict[str, str], employee_id: int, max_id: int,
                 repeats: int, updates: int, seed: int = 23) -> dict[str, dict[str, Any]]:
    """Every shape at one size (the server's cache off), then the status updates."""
    rng = random.Random(seed)
    rows: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=base, timeout=120, trust_env=False) as client:
        for shape in shapes(employee_id, rng.randint(1, max_id)):
            token = tokens[shape.who]
            path, page = shape.path, 1
            if shape.deep_of:
                path, page = deep_path(client, shape.path, token, DEEP_PAGE)
            row = time_get(client, path, token, repeats)
            row["page"] = page
            rows[shape.label] = row
            log(f"  {shape.label:48s} best {row['best_ms']:8.2f} ms  median "
                f"{row['median_ms']:8.2f} ms  items {row['items']}"
                + (f"  (page {page})" if shape.deep_of else ""))
        ids = rng.sample(range(1, max_id + 1), min(max_id, updates + WARMUP))
        row = time_status_updates(client, tokens["manager"], ids)
        rows["PUT /task/{id}/status"] = row
        log(f"  {'PUT /task/{id}/status':48s} best {row['best_ms']:8.2f} ms  median "
            f"{row['median_ms']:8.2f} ms  ({row['updates']} updates)")
    return rows


def judge(results: dict[int, dict[str, dict[str, Any]]],
          first_pages: dict[str, str]) -> list[dict[str, Any]]:
    """Per shape: ms at each size, last ÷ first and the verdict. Reads and deep pages are
    compared by their best; the status update by its median (of many single updates)."""
    sizes = sorted(results)
    small, big = sizes[0], sizes[-1]
    table = []
    for label in results[small]:
        write = label.startswith("PUT")
        key = "median_ms" if write else "best_ms"
        ms = {n: results[n][label][key] for n in sizes}
        ratio = ms[big] / ms[small] if ms[small] else float("inf")
        target = WRITE_TARGET if write else GROWTH_TARGET
        ok = ratio <= target
        notes = []
        first = first_pages.get(label)
        if first:
            deep = {n: results[n][label]["best_ms"] / results[n][first]["best_ms"]
                    for n in sizes}
            ok = ok and deep[big] <= DEEP_TARGET
            notes.append("vs page 1: " + ", ".join(f"{deep[n]:.2f}x" for n in sizes)
                         + " (pages " + "/".join(str(results[n][label]["page"])
                                                 for n in sizes) + ")")
        non2xx = sum(results[n][label]["non2xx"] for n in sizes)
        if non2xx:
            ok = False
            notes.append(f"{non2xx} non-2xx")
        items = [results[n][label]["items"] for n in sizes]
        table.append({"shape": label, "measure": key, "ms": ms, "ratio": round(ratio, 2),
                      "target": target, "pass": ok, "items": items, "notes": notes})
    return table


def print_table(table: list[dict[str, Any]], sizes: list[int], header: str) -> None:
    width = max(len(r["shape"]) for r in table) + 2
    cols = "".join(f"{f'{n:,}':>11s}" for n in sizes)
    print(f"\n{header}\n{'shape':{width}s}{cols}   ratio  target  verdict  items  notes")
    for r in table:
        ms = "".join(f"{r['ms'][n]:11.2f}" for n in sizes)
        items = "/".join("-" if i is None else str(i) for i in r["items"])
        print(f"{r['shape']:{width}s}{ms}  {r['ratio']:6.2f}  ≤{r['target']:<5}  "
              f"{'PASS' if r['pass'] else 'FAIL':7s}  {items:5s}  {'; '.join(r['notes'])}")
