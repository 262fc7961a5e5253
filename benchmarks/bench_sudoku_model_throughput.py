"""Sudoku MDM throughput on CPU: training samples/s and decoding puzzles/s per model preset.

Training: one optimizer step of `fastmdm sudoku train` (batch drawn from puzzles, augmented, masked, ELBO loss
through `mdm_loss_from_hidden`, backward, clipping, AdamW). Decoding: `fastmdm.sample` with margin order,
one cell per model call, on minimal standard puzzles from the engine; in float32 and, on CPUs where
`fastmdm.adapters.bf16_is_fast`, also with the model body under bf16 autocast. The process first calls
`fastmdm.keep_freed_memory()`, as every `fastmdm` command does.

    python benchmarks/bench_sudoku_model_throughput.py [--threads 1]
    # writes benchmarks/results/sudoku_model_cpu.{json,md}
    pytest benchmarks/bench_sudoku_model_throughput.py --benchmark-enable
The machine may be shared: the load average at the time of the run is recorded with the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

import fastmdm
from fastmdm.adapters import autocast, bf16_is_fast
from fastmdm.sudoku import data as sdata
from fastmdm.sudoku.model import sudoku_model
from fastmdm.sudoku.train import make_batch
from fastmdm.training import MDMObjective

PRESETS = ("cpu", "paper")


def _pool(n=512):
    d = sdata.generate(n, "standard", seed=123)
    return torch.as_tensor(d["puzzles"]).long(), torch.as_tensor(d["solutions"]).long()


def train_step_fn(preset, batch, pool):
    torch.manual_seed(0)
    model = sudoku_model(preset)
    obj = MDMObjective(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    state = {"step": 0}

    def step():
        g = torch.Generator().manual_seed(state["step"])
        state["step"] += 1
        loss = obj(*make_batch(pool[0], pool[1], batch, g))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return step


def decode_fn(preset, n, pool, bf16=False):
    torch.manual_seed(0)
    model = sudoku_model(preset).eval()
    model = autocast(model) if bf16 else model
    x = pool[0][:n]
    return lambda: fastmdm.sample(model, x, strategy="margin", mask_id=0, k=1)


def _time(fn, repeat):
    fn()  # warm-up
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t), sorted(t)[len(t) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--decode-n", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    fastmdm.keep_freed_memory()
    torch.set_num_threads(args.threads)
    pool = _pool()
    rows = []
    for preset in PRESETS:
        best, med = _time(train_step_fn(preset, args.batch, pool), args.repeat)
        rows.append({"preset": preset, "what": f"train step, batch {args.batch}", "best_s": best, "median_s": med,
                     "samples_per_s_median": args.batch / med})
        for bf16 in (False, True) if bf16_is_fast("cpu") else (False,):
            best, med = _time(decode_fn(preset, args.decode_n, pool, bf16), max(1, args.repeat // 2))
            rows.append({"preset": preset, "what": f"solve {args.decode_n} puzzles, margin, k=1"
                         + (", bf16 autocast" if bf16 else ""), "best_s": best, "median_s": med,
                         "puzzles_per_s_median": args.decode_n / med})
    info = {"command": " ".join(["python"] + sys.argv), "threads": args.threads, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "cpu": _cpu_name(),
            "cores": os.cpu_count(), "load_average_1_5_15": os.getloadavg(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "sudoku_model_cpu.json").write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    lines = ["# Sudoku MDM throughput on CPU", "", "```", json.dumps(info, indent=1), "```", "",
             "| preset | what | median s | best s | rate (median) |", "|---|---|---|---|---|"]
    for r in rows:
        rate = (f"{r['samples_per_s_median']:.1f} samples/s" if "samples_per_s_median" in r
                else f"{r['puzzles_per_s_median']:.2f} puzzles/s")
        lines.append(f"| {r['preset']} | {r['what']} | {r['median_s']:.3f} | {r['best_s']:.3f} | {rate} |")
    (out / "sudoku_model_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def test_train_step_cpu_preset(benchmark):
    benchmark(train_step_fn("cpu", 64, _pool(128)))


def test_decode_cpu_preset(benchmark):
    benchmark(decode_fn("cpu", 16, _pool(64)))


if __name__ == "__main__":
    main()
