"""compare.py's summaries, ratios, targets (issue #19) and printed table."""

from __future__ import annotations

import argparse
from typing import Any

from wrk_runs import summarize

# taskapi / Flask req/s, per workload; and taskapi / bare for the cached reads.
FLASK_TARGETS = {"mine": 3.0, "task": 2.0, "stats": 3.0, "mix": 3.0}
BARE_TARGETS = {"mine": 0.75, "stats": 0.75}
TAIL_TARGET = 3.0  # p99 <= 3 x p50
ACCESS_LOG_TARGET = 0.90  # taskapi at INFO / the same at WARNING: the access log costs <= 10 %
LABELS = {"mine": "GET /tasks/mine (cached)", "task": "GET /task/{id} (random, manager)",
          "stats": "GET /stats (manager)", "mix": "mix 90/10 reads/PUT status",
          "bare": "GET /bare (bare Quart)"}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def summarize_all(runs: dict[str, Any]) -> dict[str, Any]:
    """Medians per connection count, workload and app (plus "database is locked" totals),
    and every app's req/s against taskapi's, Flask's and the bare app's."""
    summary: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for conns, per in runs.items():
        summary[conns] = {}
        for w, by_app in per.items():
            summary[conns][w] = {}
            for a, rs in by_app.items():
                if rs:
                    s = summarize(rs)
                    s["database_is_locked_total"] = sum(r["database_is_locked"] for r in rs)
                    s["p99_over_p50"] = s["p99_ms_median"] / max(s["p50_ms_median"], 1e-9)
                    s["loadavg_after_runs"] = [r["loadavg_after"][0] for r in rs]
                    s["drain_s_max"] = max(max(r.get("drain_s", {}).values(), default=0.0)
                                           for r in rs)
                    summary[conns][w][a] = s
        bare = summary[conns].get("bare", {}).get("bare")
        ratios[conns] = {}
        for w, by_app in summary[conns].items():
            if w == "bare" or "taskapi" not in by_app:
                continue
            t = by_app["taskapi"]["rps_median"]
            ratios[conns][w] = {f"taskapi/{a}": _ratio(t, s["rps_median"])
                                for a, s in by_app.items() if a != "taskapi"}
            if bare:
                for a, s in by_app.items():
                    ratios[conns][w][f"{a}/bare"] = _ratio(s["rps_median"], bare["rps_median"])
    return {"summary": summary, "ratios": ratios}


def _errors(s: dict[str, Any]) -> int:
    return (s["non2xx_total"] + s["socket_errors_total"] + s["warmup_non2xx_total"]
            + s["warmup_socket_errors_total"])


def judge(result: dict[str, Any]) -> None:
    """The issue's targets, each PASS/FAIL, on taskapi's runs; "failed" if taskapi had any
    non-2xx, socket error or "database is locked"."""
    targets: dict[str, Any] = {}

    def add(name: str, conns: str, workload: str, value: float, target: str,
            ok: bool) -> None:
        targets[f"{name} c={conns}"] = {"value": round(value, 3), "target": target,
                                        "pass": ok, "connections": conns,
                                        "workload": workload}

    failed = False
    for conns, per in result["summary"].items():
        ratios = result["ratios"][conns]
        for w, by_app in per.items():
            if w == "bare" or "taskapi" not in by_app:
                continue
            s = by_app["taskapi"]
            if "taskapi/flask" in ratios[w] and w in FLASK_TARGETS:
                v = ratios[w]["taskapi/flask"]
                add(f"{w} taskapi/flask", conns, w, v, f">= {FLASK_TARGETS[w]}",
                    v >= FLASK_TARGETS[w])
            if "taskapi/bare" in ratios[w] and w in BARE_TARGETS:
                v = ratios[w]["taskapi/bare"]
                add(f"{w} taskapi/bare", conns, w, v, f">= {BARE_TARGETS[w]}",
                    v >= BARE_TARGETS[w])
            if "taskapi/warning" in ratios[w]:
                v = ratios[w]["taskapi/warning"]
                add(f"{w} INFO/WARNING (access log)", conns, w, v, f">= {ACCESS_LOG_TARGET}",
                    v >= ACCESS_LOG_TARGET)
            add(f"{w} p99/p50", conns, w, s["p99_over_p50"], f"<= {TAIL_TARGET}",
                s["p99_over_p50"] <= TAIL_TARGET)
            bad = _errors(s)
            add(f"{w} non-2xx+socket errors", conns, w, bad, "0", bad == 0)
            locked = s["database_is_locked_total"]
            add(f"{w} database is locked", conns, w, locked, "0", locked == 0)
            failed = failed or bad > 0 or locked > 0
    result["targets"] = targets
    result["failed"] = failed


def print_report(result: dict[str, Any], args: argparse.Namespace) -> None:
    load = [r for c in result["summary"].values() for w in c.values() for s in w.values()
            for r in s["loadavg_after_runs"]]
    print(f"\ncompare ({args.database}): wrk -t{args.threads} -d{args.duration}s "
          f"(+{args.warmup}s warmup each), medians of {args.repeats}; "
          f"commit {result['app_version']['commit']}; load average (1 min) after the runs "
          f"{min(load):.1f}-{max(load):.1f}")
    for name, cmd in result.get("commands", {}).items():
        print(f"  {name}: {cmd}")
    head = (f"{'workload':34s} {'app':8s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} "
            f"{'p99/p50':>7s} {'non-2xx':>7s} {'locked':>6s} {'CPU us/req':>10s} "
            f"{'t/flask':>7s} {'t/fapi':>6s} {'t/warn':>6s} {'/bare':>5s}  runs req/s")
    for conns, per in result["summary"].items():
        print(f"\nc={conns}\n{head}\n{'-' * len(head)}")
        for w, by_app in per.items():
            ratios = result["ratios"][conns].get(w, {})
            for a, s in by_app.items():
                tf = ratios.get("taskapi/flask") if a == "taskapi" else None
                tq = ratios.get("taskapi/fastapi") if a == "taskapi" else None
                tw = ratios.get("taskapi/warning") if a == "taskapi" else None
                tb = ratios.get(f"{a}/bare")
                print(f"{LABELS[w]:34s} {a:8s} {s['rps_median']:7.0f} "
                      f"{s['p50_ms_median']:8.1f} {s['p99_ms_median']:8.1f} "
                      f"{s['p99_over_p50']:7.1f} {_errors(s):7d} "
                      f"{s['database_is_locked_total']:6d} "
                      f"{s['server_cpu_us_per_req_median']:10.0f} "
                      f"{f'{tf:7.2f}' if tf is not None else '':>7s} "
                      f"{f'{tq:6.2f}' if tq is not None else '':>6s} "
                      f"{f'{tw:6.2f}' if tw is not None else '':>6s} "
                      f"{f'{tb:5.2f}' if tb is not None else '':>5s}  {s['rps_runs']}")
    drains = {a: max(s["drain_s_max"] for c in result["summary"].values() for w in c.values()
                     for b, s in w.items() if b == a)
              for a in {b for c in result["summary"].values() for w in c.values() for b in w}}
    print("\nlongest wait for a server to answer the closed connections' requests after a run: "
          + ", ".join(f"{a} {v:.1f} s" for a, v in sorted(drains.items())))
    print("\ntargets (taskapi):")
    for name, t in result["targets"].items():
        print(f"  {'PASS' if t['pass'] else 'FAIL'}  {name:40s} {t['value']}  ({t['target']})")
    for a, scan in result.get("server_logs", {}).items():
        print(f"{a} log: {scan['lines']} lines, {scan['error_lines']} ERROR, "
              f"{scan['tracebacks']} tracebacks, 'database is locked' "
              f"{scan['database_is_locked']}")
    for p in result.get("profiles", []):
        print(f"\npy-spy taskapi {p['endpoint']} (c={p['connections']}, {p['samples']} "
              "samples): top self")
        for name, pct in p["top_self"][:12]:
            print(f"  {pct:5.1f}%  {name}")
        print("  top inclusive:")
        for name, pct in p["top_inclusive"][:15]:
            print(f"  {pct:5.1f}%  {name}")
        print("  by package: " + ", ".join(f"{n} {pct}%" for n, pct in p["by_package"][:12]))
    print()
