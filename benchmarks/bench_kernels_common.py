"""Shared pieces of the kernel benchmarks: timing, peak memory, hardware/version records, result files.

GPU timings use `triton.testing.do_bench` (CUDA events, L2 flushed between repetitions, median). Without a
GPU the benchmark scripts only run `--smoke`: tiny shapes through Triton's interpreter to check that the
script itself works; those timings measure the interpreter and are never written as results.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def on_gpu() -> bool:
    return torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")


def prepare_smoke_env() -> None:
    """--smoke on a machine without a GPU: the interpreter must be chosen before fastmdm.kernels is imported."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def device() -> str:
    return "cuda" if on_gpu() else "cpu"


def bench(fn, *, warmup_ms: int = 25, rep_ms: int = 100) -> float:
    """Median milliseconds per call."""
    if on_gpu():
        import triton.testing
        return float(triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))
    fn()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def peak_memory_mb(fn) -> float | None:
    """Peak CUDA memory allocated while `fn` runs, above what was allocated before it (MB); None on CPU."""
    if not on_gpu():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / 2**20


def try_compile(fn):
    """torch.compile(fn) or None when compilation is unavailable (records why)."""
    try:
        return torch.compile(fn, dynamic=False)
    except Exception as e:  # noqa: BLE001
        print(f"torch.compile unavailable: {e}", file=sys.stderr)
        return None


def environment(command: str) -> dict:
    import triton
    env = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "command": command,
        "interpreter": not on_gpu(),
    }
    try:
        env["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        env["git"] = "unknown"
    if on_gpu():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count,
                   capability=f"{p.major}.{p.minor}")
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    try:
        import flash_attn
        env["flash_attn"] = flash_attn.__version__
    except Exception:  # noqa: BLE001
        env["flash_attn"] = None
    return env


def copy_bandwidth_gbs(nbytes: int = 1 << 30) -> float | None:
    """Measured device-to-device copy bandwidth (read + write bytes per second), the roofline we compare to."""
    if not on_gpu():
        return None
    x = torch.empty(nbytes // 2, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x))
    return 2 * nbytes / (ms * 1e-3) / 1e9


def fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def write_results(name: str, title: str, env: dict, rows: list[dict], notes: list[str], outdir: Path) -> Path:
    """benchmarks/results/<name>.json and .md (or under `outdir`)."""
    outdir.mkdir(parents=True, exist_ok=True)
    payload = {"env": env, "rows": rows, "notes": notes}
    tmp = outdir / f".{name}.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, outdir / f"{name}.json")
    cols = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    lines = [f"# {title}", "",
             f"{env['date_utc']}, {env.get('gpu', 'no GPU')}, torch {env['torch']}, triton {env['triton']}, "
             f"CUDA {env['cuda']}, driver {env.get('driver', '-')}, flash_attn {env.get('flash_attn')}, "
             f"git {env['git']}. Command: `{env['command']}`.", ""]
    lines += notes + [""] if notes else []
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |")
    md = outdir / f"{name}.md"
    tmp = outdir / f".{name}.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, md)
    return md


def main(argv, *, name: str, title: str, doc: str, run, flags: dict[str, str] | None = None) -> int:
    """The command line every kernel benchmark shares: `--smoke` (tiny shapes through the interpreter, printed
    only), its own boolean `flags` (passed to `run` as keywords), `--out`; on a GPU the results are written."""
    import argparse

    flags = flags or {}
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes; without a GPU, through the interpreter")
    for flag, text in flags.items():
        ap.add_argument(flag, action="store_true", help=text)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.smoke:
        prepare_smoke_env()
    elif not on_gpu():
        print(f"bench_{name}: needs a CUDA GPU (run with --smoke to check the script on CPU)", file=sys.stderr)
        return 2
    chosen = {f.lstrip("-").replace("-", "_"): getattr(args, f.lstrip("-").replace("-", "_")) for f in flags}
    rows, notes = run(args.smoke, **chosen)
    used = [f for f in ["--smoke", *flags] if getattr(args, f.lstrip("-").replace("-", "_"))]
    env = environment(" ".join([f"python benchmarks/bench_{name}.py", *used]))
    for r in rows:
        print({k: fmt(v) for k, v in r.items()})
    if not args.smoke:
        print(write_results(f"{name}_" + env["gpu"].replace(" ", "_").lower(), title, env, rows, notes, args.out))
    return 0
