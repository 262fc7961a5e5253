"""One prepared GPU run for the Triton kernels: check them, time them, write the results.

Steps (each result file is written as soon as its step finishes, so a run cut short keeps what it did):
  1. the kernel tests (tests/test_kernels_*.py) on the GPU, compiled instead of interpreted   (<= 240 s)
  2. selection: eager / torch.compile / Triton at LLaDA's shape, and the fused LM head
  3. loss: eager / torch.compile / fused at V = 126,464
  4. attention: Triton / SDPA flash, cuDNN, efficient / flash_attn / eager, fwd and fwd+bwd
  5. a summary against the kernels' speed targets: kernels_gpu_summary.md

Results go to $OUT when it is set (the device runner copies it back), else benchmarks/results/.
Budget: about 8 minutes on one H200 (use --full for every attention length); benchmarks that would start
after --budget-s seconds (default 420) are skipped and say so.

    python benchmarks/gpu_kernels.py [--full] [--skip-tests]
    python benchmarks/gpu_kernels.py --smoke /tmp/gk   # plumbing check on CPU; interpreter timings, not results
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def _log(msg: str) -> None:
    print(f"[gpu_kernels {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_tests(out: Path, timeout_s: int) -> dict:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_kernels_*.py"))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        tail, rc = (p.stdout + p.stderr)[-6000:], p.returncode
    except subprocess.TimeoutExpired as e:
        tail, rc = (str(e.stdout or "") + str(e.stderr or ""))[-6000:], "timeout"
    res = {"command": " ".join(cmd[1:]), "returncode": rc, "seconds": round(time.time() - t0, 1), "tail": tail}
    (out / "kernels_gpu_tests.txt").write_text(f"$ python {res['command']}\nrc={rc} in {res['seconds']} s\n\n{tail}")
    return res


def _f(v, spec):
    return "-" if v is None or v != v else format(v, spec)


def _best(rows, **match):
    sel = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return sel


def summary(out: Path, env: dict, tests: dict | None, sel: list, loss: list, attn: list) -> Path:
    lines = ["# Triton kernels on GPU: summary against the speed targets", "",
             f"{env.get('date_utc')}, {env.get('gpu')}, torch {env.get('torch')}, triton {env.get('triton')}, "
             f"git {env.get('git')}. Command: `{env.get('command')}`.", ""]
    if env.get("interpreter"):
        lines += ["SMOKE RUN through Triton's interpreter on CPU: these timings check the script, they are not "
                  "GPU results.", ""]
    if tests is not None:
        lines.append(f"Kernel tests on the GPU: return code {tests['returncode']} in {tests['seconds']} s "
                     "(details in kernels_gpu_tests.txt).")
        lines.append("")
    lines.append("| target | measured | met |")
    lines.append("|---|---|---|")
    for r in _best(sel, op="token_stats", impl="triton"):
        cond = (f"selection {r['score']} T={r['T']}: >= 80% copy bw, >= 5x eager, >= 2x compile")
        pct, xe, xc = r.get("% copy bw"), r.get("x vs eager"), r.get("x vs compile")
        met = pct is not None and pct >= 80 and xe is not None and xe >= 5 and (xc is None or xc >= 2)
        lines.append(f"| {cond} | {_f(pct, '.0f')}% bw, {_f(xe, '.1f')}x eager, {_f(xc, '.1f')}x compile | "
                     f"{'yes' if met else 'NO'} |")
    shapes = sorted({r["shape"] for r in sel if r["op"] == "linear_token_stats"})
    for shape in shapes:
        fused = _best(sel, op="linear_token_stats", shape=shape, impl="fused triton")
        split = _best(sel, op="linear_token_stats", shape=shape, impl="matmul + triton select")
        if fused and split:
            f, s = fused[0]["ms"], split[0]["ms"]
            lines.append(f"| fused LM head faster than matmul + select ({shape}) | {f:.3g} ms vs {s:.3g} ms | "
                         f"{'yes' if f < s else 'NO'} |")
    for r in _best(loss, impl="triton fused"):
        mv, tv = r.get("memory vs eager"), r.get("time vs eager")
        if mv is not None and tv is not None:
            lines.append(f"| loss N={r['N']} d={r['d']}: peak memory <= 50% eager, time <= 110% eager | "
                         f"{100 * mv:.0f}% memory, {100 * tv:.0f}% time | "
                         f"{'yes' if mv <= 0.5 and tv <= 1.1 else 'NO'} |")
    for r in _best(attn, impl="triton", **{"padded keys": "-"}):
        others = [o for o in attn if o["D"] == r["D"] and o["L"] == r["L"] and o["padded keys"] == "-"
                  and o["impl"].startswith("sdpa") and o.get("fwd TFLOP/s")]
        if not r.get("fwd TFLOP/s") or r["D"] not in (64, 128):
            continue
        best = max(others, key=lambda o: o["fwd TFLOP/s"]) if others else None
        fa2 = {64: 282, 128: 309}.get(r["D"])  # lower end of FlashAttention-2's published H100 forward TFLOP/s
        ok = best is None or r["fwd TFLOP/s"] > best["fwd TFLOP/s"]
        ok = ok and (fa2 is None or r["fwd TFLOP/s"] >= fa2)
        vs = f", best SDPA ({best['impl']}) {best['fwd TFLOP/s']:.0f}" if best else ""
        lines.append(f"| attention fwd D={r['D']} L={r['L']}: >= FA2 ({fa2} TFLOP/s) and faster than SDPA | "
                     f"{r['fwd TFLOP/s']:.0f} TFLOP/s{vs} | {'yes' if ok else 'NO'} |")
    path = out / "kernels_gpu_summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="every attention length (512 ... 8192)")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--smoke", metavar="DIR", help="no GPU needed: tiny shapes through the interpreter, files to DIR")
    ap.add_argument("--tests-timeout", type=int, default=180)
    ap.add_argument("--budget-s", type=int, default=420,
                    help="skip the remaining benchmarks once this many seconds have passed")
    args = ap.parse_args(argv)
    start = time.time()
    if args.smoke:  # check this script's plumbing without a GPU: tiny shapes, interpreter, results to --smoke dir
        import torch
        if not torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"
        args.skip_tests = True
    else:
        os.environ.pop("TRITON_INTERPRET", None)
    import bench_kernels_common as C
    if not C.on_gpu() and not args.smoke:
        print("gpu_kernels.py needs a CUDA GPU (--smoke DIR checks the script on CPU)", file=sys.stderr)
        return 2
    if args.smoke:
        out = Path(args.smoke)
    else:
        out = Path(os.environ["OUT"]) if os.environ.get("OUT") else C.RESULTS
    out.mkdir(parents=True, exist_ok=True)
    env = C.environment("python benchmarks/gpu_kernels.py" + (" --full" if args.full else "")
                        + (" --smoke" if args.smoke else ""))
    gpu = env.get("gpu", "interpreter-smoke").replace(" ", "_").lower()
    (out / "kernels_gpu_env.json").write_text(json.dumps(env, indent=1))
    _log(f"{env.get('gpu', 'no GPU')}, torch {env['torch']}, triton {env['triton']}")
    tests = None
    if not args.skip_tests:
        _log("kernel tests on the GPU")
        tests = run_tests(out, args.tests_timeout)
        _log(f"tests: rc={tests['returncode']} in {tests['seconds']} s")
    import bench_kernels_attention as BA
    import bench_kernels_loss as BL
    import bench_kernels_select as BS
    results = {}
    for key, title, mod, kwargs in (
            ("select", BS.TITLE, BS, {}),
            ("loss", BL.TITLE, BL, {}),
            ("attention", BA.TITLE, BA, {"quick": not args.full})):
        if time.time() - start > args.budget_s:
            _log(f"skipping {key}: over the {args.budget_s} s budget")
            results[key] = []
            continue
        _log(f"benchmark: {key}")
        t0 = time.time()
        try:
            rows, notes = mod.run(args.smoke, **kwargs)
        except Exception as e:  # noqa: BLE001 - keep going: the other benchmarks still run and are written
            rows, notes = [], [f"benchmark failed: {type(e).__name__}: {e}"]
            _log(notes[0])
        results[key] = rows
        notes = notes + [f"Step time {time.time() - t0:.0f} s."]
        if args.smoke:
            title = "SMOKE (interpreter on CPU, not GPU results): " + title
        path = C.write_results(f"kernels_{key}_{gpu}", title, env, rows, notes, out)
        _log(f"wrote {path}")
    path = summary(out, env, tests, results["select"], results["loss"], results["attention"])
    _log(f"wrote {path}")
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
