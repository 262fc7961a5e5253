"""Throughput of the native Zebra engine: `fastmdm.zebra.engine.generate` (minimal unique puzzles per second) and
the exact checker `engine.check`, at the default size (5 houses x 5 attributes) and at Shah et al.'s other sizes.

Target: >= 10,000 puzzles per second on 2 threads of the 2-core development machine at the default size.

The machine is shared, so next to wall-clock rates this records the process CPU time (all threads) and the
load average before and after each run: puzzles per CPU-second does not depend on how many other processes
compete for the cores.

    python benchmarks/bench_zebra_generate.py          # writes benchmarks/results/zebra_generate_cpu.{json,md}
    python benchmarks/bench_zebra_generate.py --quick  # smaller n, prints only
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from bench_common import LOAD_NOTE, info_line, native_info, timed, write_results

from fastmdm.zebra import engine
from fastmdm.zebra.engine import Task

TARGET = 10_000


def _row(what: str, task: Task, n: int, threads: int, wall: float, cpu: float, l0: float, l1: float) -> dict:
    return {
        "what": what,
        "task": f"{task.houses}x{task.attributes} K={task.max_clues}" + (" logic-only" if task.logic_only else ""),
        "n": n,
        "threads": threads,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "puzzles_per_s": round(n / wall, 1),
        "puzzles_per_cpu_s": round(n / cpu, 1) if cpu > 0 else None,
        "cores_used": round(cpu / wall, 2),
        "load_before": round(l0, 2),
        "load_after": round(l1, 2),
    }


def measure(task: Task, n: int, threads: int, check: bool) -> list[dict]:
    engine.generate(min(n, 2000), task, seed=1, threads=threads)  # warm-up (first-touch pages, thread start)
    p, wall, cpu, l0, l1 = timed(lambda: engine.generate(n, task, seed=2024, threads=threads))
    gen = _row("generate", task, n, threads, wall, cpu, l0, l1)
    gen.update(clues_mean=round(float(p.clues.mean()), 2), clues_max=int(p.clues.max()),
               need_guess=round(float((p.guesses > 0).mean()), 4), rounds_mean=round(float(p.rounds.mean()), 2),
               attempts_mean=round(float(p.attempts.mean()), 3))
    rows = [gen]
    if check:
        r, wall, cpu, l0, l1 = timed(lambda: engine.check(p.tokens, task, threads=threads))
        assert r.solved.all()
        rows.append(_row("check", task, n, threads, wall, cpu, l0, l1))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small n, print only")
    ap.add_argument("--n", type=int, default=100_000, help="puzzles per run at the default size")
    args = ap.parse_args(argv)
    n = 10_000 if args.quick else args.n
    plan = [(Task(), n, 2, True), (Task(), n, 1, False), (Task(logic_only=True), n // 2, 2, False)]
    plan += [(Task(s, s), max(1000, n // (4 if s == 6 else 2)), 2, False) for s in (3, 4, 6)]
    rows = []
    for task, count, threads, check in plan:
        for row in measure(task, count, threads, check):
            rows.append(row)
            print(json.dumps(row), flush=True)
    default = next(r for r in rows if r["what"] == "generate" and r["threads"] == 2 and r["task"] == "5x5 K=25")
    info = {
        **native_info("bench_zebra_generate.py", args.quick),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "target_puzzles_per_s": TARGET,
        "default_2_threads_puzzles_per_s": default["puzzles_per_s"],
        "default_2_threads_puzzles_per_cpu_s": default["puzzles_per_cpu_s"],
    }
    print(json.dumps(info), flush=True)
    if args.quick:
        return 0
    lines = [
        "# Native Zebra engine throughput (CPU)",
        "",
        info_line(info),
        "",
        "Minimal unique puzzles (random solution, clues drawn until the solver proves uniqueness, pruned to a",
        "minimal set, ordered solve recorded), into fresh numpy arrays after a warm-up run. `check` is",
        "`engine.check` (grid vs clues and all-different, plus a solve of each puzzle for per-cell correctness).",
        *LOAD_NOTE,
        "",
        "| what | task | n | threads | puzzles/s (wall) | puzzles/CPU-s | cores used | load before/after "
        "| clues mean/max | need a guess |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu_rate = f"{r['puzzles_per_cpu_s']:.0f}" if r["puzzles_per_cpu_s"] else "-"
        extra = f"{r['clues_mean']} / {r['clues_max']} | {r['need_guess']:.1%}" if r["what"] == "generate" else "- | -"
        lines.append(f"| {r['what']} | {r['task']} | {r['n']} | {r['threads']} | {r['puzzles_per_s']:.0f} | {cpu_rate} "
                     f"| {r['cores_used']:.2f} | {r['load_before']} / {r['load_after']} | {extra} |")
    lines += [
        "",
        f"Target >= {TARGET:,} puzzles/s on 2 threads at the default 5x5: measured "
        f"{default['puzzles_per_s']:,.0f} puzzles/s (wall), {default['puzzles_per_cpu_s']:,.0f} per CPU-second.",
        "",
    ]
    write_results("zebra_generate_cpu", info, rows, lines)
    return 0


# pytest-benchmark entry point (run with --benchmark-enable)
def test_bench_generate_10k(benchmark):
    benchmark(lambda: engine.generate(10_000, Task(), seed=1))


if __name__ == "__main__":
    sys.exit(main())
