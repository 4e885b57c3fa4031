"""The report tasks_load.py prints at the end: the table of runs, statuses, targets,
processes, the server log and the profiles."""

from __future__ import annotations

import argparse
from typing import Any

from proc_stats import print_processes
from servers import LOCKED
from tasks_phases import ENDPOINTS, PATHS


def print_report(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\ntasks load ({args.database}): wrk -t{args.threads} -d{args.duration}s "
          f"(+{args.warmup}s warmup), {args.repeats} repeats (medians), "
          f"{args.workers} hypercorn workers, {args.users} employee tokens")
    head = (f"{'run':22s} {'req/s':>8s} {'/bare':>6s} {'p50 ms':>8s} {'p99 ms':>8s} "
            f"{'CPU us/req':>10s} {'non-2xx':>8s} {'sockerr':>7s}  runs req/s")
    print(head)
    print("-" * len(head))

    def row(label: str, s: dict[str, Any], ratio: float | None) -> None:
        r = f"{ratio:6.2f}" if ratio is not None else f"{'':6s}"
        print(f"{label:22s} {s['rps_median']:8.0f} {r} {s['p50_ms_median']:8.2f} "
              f"{s['p99_ms_median']:8.2f} {s['server_cpu_us_per_req_median']:10.0f} "
              f"{s['non2xx_total']:8d} {s['socket_errors_total']:7d}  {s['rps_runs']}")

    for conns, r in result["ratios"].items():
        for name in ENDPOINTS:
            label = f"{'GET ' + PATHS.get(name, '/task/{id}')} c={conns}"
            row(label, r["summary"][name], r["ratio"].get(name))
    row(f"mix c={args.mix_connections}", result["mix"], None)
    size = result.get("size") or {}
    if size.get("big"):
        k_small, k_big = f"{args.tasks // 1000}k", f"{args.big_tasks // 1000}k"
        row(f"GET /task/{{id}} {k_small} (A/B)", size["small"], None)
        row(f"GET /task/{{id}} {k_big} (A/B)", size["big"], None)
        row(f"GET /task/{{id}} {k_big} same", size["big_same_ids"], None)
        row(f"  no cache {k_small}", size["small_uncached"], None)
        row(f"  no cache {k_big}", size["big_uncached"], None)
    print("\nstatuses (measured runs):")
    for conns, r in result["ratios"].items():
        for name in ENDPOINTS:
            print(f"  {name}@{conns}: {r['summary'][name]['statuses']}")
    print(f"  mix: {result['mix']['statuses']}  (warmups: non-2xx "
          f"{result['mix']['warmup_non2xx_total']}, socket errors "
          f"{result['mix']['warmup_socket_errors_total']})")
    if size.get("big"):
        for key in ("small", "big", "big_same_ids", "small_uncached", "big_uncached"):
            print(f"  size {key}: {size[key]['statuses']}")
    print("\ntargets:")
    for name, t in result["targets"].items():
        print(f"  {'PASS' if t['pass'] else 'FAIL'}  {name:22s} {t['value']}  ({t['target']})")
    print_processes("\nserve processes after the runs:", result["server_processes_after_load"])
    print(f"  worker VmRSS before the table-size phase: "
          f"{result.get('worker_rss_mib_before_size_phase')} MiB")
    scan = result["server_log"]
    print(f"\nserver log: {scan['lines']} lines, {scan['error_lines']} ERROR, "
          f"{scan['warning_lines']} WARNING, {scan['tracebacks']} tracebacks, "
          f"'{LOCKED}': {scan['database_is_locked']}")
    for msg, n in scan["distinct_error_and_warning_messages"][:10]:
        print(f"  {n:5d}x {msg}")
    for p in result.get("profiles", []):
        print(f"\npy-spy {p['endpoint']} (c={p['connections']}, {p['samples']} samples, "
              f"{p['rps_while_profiled']} req/s while profiled): top self")
        for name, pct in p["top_self"][:12]:
            print(f"  {pct:5.1f}%  {name}")
        print("  top inclusive:")
        for name, pct in p["top_inclusive"][:15]:
            print(f"  {pct:5.1f}%  {name}")
        print("  by package: " + ", ".join(f"{n} {pct}%" for n, pct in p["by_package"][:12])
              + f"; aiosqlite threads seen running: {p['aiosqlite_threads_seen']} "
              + f"(Thread-N ranges per worker: {list(p['aiosqlite_thread_numbers'].values())})"
              + (f"; samples waiting {p['samples_waiting']}, in SQLite's busy-handler sleep "
                 f"{p['samples_sqlite_busy_handler_sleep']}" if p["native"] else ""))
    print()
