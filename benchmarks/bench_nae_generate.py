"""Throughput of the native L&O-NAE-SAT engine: `fastmdm.nae.engine.generate` (sequences per second) and the
exact checker `engine.check`, on the paper's tasks (length 300, clause width 3).

Target: >= 100,000 L&O sequences per second on the 2-core development machine.

The machine is shared, so next to wall-clock rates this records the process CPU time (all threads) and the
load average before and after each run: sequences per CPU-second does not depend on how many other
processes compete for the cores.

    python benchmarks/bench_nae_generate.py          # writes benchmarks/results/nae_generate_cpu.{json,md}
    python benchmarks/bench_nae_generate.py --quick  # smaller n, prints only
    pytest benchmarks/bench_nae_generate.py --benchmark-enable   # pytest-benchmark timings
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from bench_common import LOAD_NOTE, info_line, native_info, timed, write_results

from fastmdm.nae import engine
from fastmdm.nae.engine import Task

TASKS = (Task(latents=25, observations=275), Task(latents=100, observations=200))


def _row(what: str, task: Task, n: int, threads: int, wall: float, cpu: float, l0: float, l1: float) -> dict:
    return {
        "what": what,
        "task": f"N={task.latents} P={task.observations} k={task.arity}",
        "n": n,
        "threads": threads,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "seqs_per_s": round(n / wall, 1),
        "seqs_per_cpu_s": round(n / cpu, 1) if cpu > 0 else None,
        "cores_used": round(cpu / wall, 2),
        "load_before": round(l0, 2),
        "load_after": round(l1, 2),
    }


def measure(task: Task, n: int, threads: int) -> tuple[dict, dict]:
    # one untimed run first: numpy's first buffer of this size is fresh memory whose first-touch page faults
    # would land in the first timed row only (later runs reuse the freed pages)
    engine.generate(n, task, seed=1, threads=threads)
    seqs, wall, cpu, l0, l1 = timed(lambda: engine.generate(n, task, seed=2024, threads=threads))
    gen = _row("generate", task, n, threads, wall, cpu, l0, l1)
    gen["observation_ones"] = round(float(seqs[:, task.observation_positions].mean()), 4)
    r, wall, cpu, l0, l1 = timed(lambda: engine.check(seqs, task, threads=threads))
    assert r.ok.all()
    return gen, _row("check", task, n, threads, wall, cpu, l0, l1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small n, print only")
    ap.add_argument("--n", type=int, default=1_000_000, help="sequences per run")
    args = ap.parse_args(argv)
    n = 50_000 if args.quick else args.n
    cores = os.cpu_count() or 1
    rows = []
    for task in TASKS:
        for threads in sorted({1, cores}):
            for row in measure(task, n, threads):
                rows.append(row)
                print(json.dumps(row), flush=True)
    gen = [r for r in rows if r["what"] == "generate"]
    best = max(r["seqs_per_s"] for r in gen)
    info = {
        **native_info("bench_nae_generate.py", args.quick),
        "target_seqs_per_s": 100_000,
        "best_generate_seqs_per_s": best,
        "worst_generate_seqs_per_s": min(r["seqs_per_s"] for r in gen),
    }
    print(json.dumps(info), flush=True)
    if args.quick:
        return 0
    lines = [
        "# Native L&O-NAE-SAT engine throughput (CPU)",
        "",
        info_line(info),
        "",
        "Sequences of length 300 (the paper's tasks, clause width 3), int8 tokens, into a fresh numpy array (after",
        "one untimed run of the same size). `check` is `engine.check` (native check + the per-sequence accuracy).",
        *LOAD_NOTE,
        "",
        "| what | task | n | threads | sequences/s (wall) | sequences/CPU-s | cores used | load before/after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu_rate = f"{r['seqs_per_cpu_s']:.0f}" if r["seqs_per_cpu_s"] else "-"
        lines.append(f"| {r['what']} | {r['task']} | {r['n']} | {r['threads']} | {r['seqs_per_s']:.0f} | {cpu_rate} | "
                     f"{r['cores_used']:.2f} | {r['load_before']} / {r['load_after']} |")
    lines += [
        "",
        f"Target >= {info['target_seqs_per_s']:,} sequences/s: generation measured "
        f"{info['worst_generate_seqs_per_s']:,.0f}-{best:,.0f} sequences/s (wall) across the rows above. "
        f"Share of observations equal to 1: {gen[0]['observation_ones']} (3/4 expected).",
        "",
    ]
    write_results("nae_generate_cpu", info, rows, lines)
    return 0


# pytest-benchmark entry points (run with --benchmark-enable)
def test_bench_generate_100k(benchmark):
    benchmark(lambda: engine.generate(100_000, TASKS[0], seed=1))


def test_bench_check_100k(benchmark):
    seqs = engine.generate(100_000, TASKS[0], seed=1)
    benchmark(lambda: engine.check(seqs, TASKS[0]))


if __name__ == "__main__":
    sys.exit(main())
