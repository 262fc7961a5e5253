"""Compile every Triton kernel for an H100/H200 (sm_90a) on a machine without a GPU, and report resources.

The interpreter (TRITON_INTERPRET=1) runs the kernels' Python semantics on CPU; it never lowers them, so
the errors only a GPU compile finds (an unsupported `tl.dot` shape or dtype, a layout conversion, a
config whose shared memory exceeds the card) stay hidden until a GPU is at hand. Triton's compiler needs
no GPU to emit code, only a target: this script swaps in a stand-in driver that reports an sm_90 device,
makes every launch compile-only (`warmup=True`), makes every autotuner compile *all* its configs instead
of benchmarking them, and then drives the real wrappers (`fastmdm.kernels.*`) over a matrix of dtypes,
head dims, flags and shapes. Each kernel goes through Triton's whole pipeline down to a cubin from the
ptxas that ships with Triton; `cuobjdump --dump-resource-usage` then reads the registers, spill (local)
memory and static shared memory per kernel, and the launch metadata gives the dynamic shared memory.

Nothing is launched, so this proves the kernels build for the target and fit its limits, not that they
compute the right numbers on it (the interpreter tests do that on CPU; `gpu_kernels.py` on a GPU).

    python benchmarks/compile_sm90.py                   # full matrix -> benchmarks/results/kernels_sm90_compile.*
    python benchmarks/compile_sm90.py --quick --json P  # the subset the test suite compiles
    python benchmarks/compile_sm90.py --quick --out benchmarks/results  # that subset's table (~2 min on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # must happen before triton and the kernels are imported
# a fresh cache, so that every kernel is really compiled here (and the time reported is a cold compile)
os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="fastmdm-sm90-"))

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver as _driver
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

from fastmdm.kernels.common import SM90_SHARED_PER_BLOCK

ROOT = Path(__file__).resolve().parent.parent
SM90_REGS_PER_THREAD = 255


class _Sm90Driver:
    """Just enough of a Triton driver to compile: a target, a device index and a stream."""

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


class Recorder:
    """Compile-only launches; every kernel built is recorded once, with the case that first asked for it."""

    def __init__(self):
        self.case = ""
        self.pruned = False
        self.records: list[dict] = []
        self._seen: set[int] = set()

    def install(self):
        rec = self
        orig = JITFunction.run

        def run(self, *args, grid, warmup, **kwargs):
            kernel = orig(self, *args, grid=grid, warmup=True, **kwargs)
            if id(kernel) not in rec._seen:  # a cached build comes back as the same object
                rec._seen.add(id(kernel))
                meta = {k: v for k, v in kwargs.items() if k.startswith("BLOCK_") and isinstance(v, int)}
                rec.records.append({"case": rec.case, "kernel": self.fn.__name__, "compiled": kernel,
                                    "pruned": rec.pruned, "meta": meta})
            return kernel

        def autotune_run(self, *args, grid, warmup=False, **kwargs):
            # compile every config instead of timing them; note which ones the config pruner drops
            self.nargs = dict(zip(self.arg_names, args))
            kept = self.prune_configs(kwargs)
            for cfg in self.configs:
                rec.pruned = cfg not in kept
                try:
                    self.fn.run(*args, grid=grid, warmup=True, **kwargs, **cfg.all_kwargs())
                finally:
                    rec.pruned = False
            self.nargs = None

        JITFunction.run = run
        Autotuner.run = autotune_run
        _driver.set_active(_Sm90Driver())


def _cases(quick: bool):
    """(name, thunk) pairs; each thunk calls a real wrapper of fastmdm.kernels with CPU tensors."""
    from fastmdm.kernels import attention as ka
    from fastmdm.kernels import loss as kl
    from fastmdm.kernels import select as ks

    def t(*shape, dtype=torch.float32):
        return torch.randn(*shape, dtype=dtype)

    dtypes = [torch.bfloat16] if quick else [torch.float32, torch.float16, torch.bfloat16]
    out = []
    for dt in dtypes:
        name = str(dt).replace("torch.", "")
        for temp in (0.0, 1.0):
            # V = 126,464 (LLaDA) at large N gives one row per program and the widest tile; V = 10 packs rows
            out.append((f"token_stats {name} T={temp} V=126464 rows",
                        lambda dt=dt, temp=temp: ks.token_stats(t(64, 126_464, dtype=dt), score="margin",
                                                                temperature=temp, mask_id=126_336,
                                                                rows=torch.arange(0, 64, 2))))
            out.append((f"token_stats {name} T={temp} V=10",
                        lambda dt=dt, temp=temp: ks.token_stats(t(300, 10, dtype=dt), score="entropy",
                                                                temperature=temp)))
        for bias in (False, True):
            for temp in ((0.0,) if quick else (0.0, 1.0)):
                out.append((f"linear_token_stats {name} bias={bias} T={temp}",
                            lambda dt=dt, bias=bias, temp=temp: ks.linear_token_stats(
                                t(96, 128, dtype=dt), t(4096, 128, dtype=dt),
                                t(4096, dtype=dt) if bias else None, score="confidence", temperature=temp,
                                mask_id=3)))
        heads = (64, 128) if quick else (32, 64, 96, 128)
        for d in heads:
            for kpm in ((False, True) if d == 64 and dt == torch.bfloat16 and not quick else (True,)):
                def attn(dt=dt, d=d, kpm=kpm):
                    q = t(2, 4, 300, d, dtype=dt).requires_grad_()
                    k = t(2, 2, 300, d, dtype=dt).requires_grad_()
                    v = t(2, 2, 300, d, dtype=dt).requires_grad_()
                    mask = torch.ones(2, 300, dtype=torch.bool) if kpm else None
                    ka.attention(q, k, v, key_padding_mask=mask).sum().backward()
                out.append((f"attention fwd+bwd {name} D={d} padding={kpm}", attn))
        out.append((f"linear_weighted_ce {name}",
                    lambda dt=dt: kl.linear_weighted_ce(t(40, 64, dtype=dt).requires_grad_(),
                                                        t(5000, 64, dtype=dt).requires_grad_(),
                                                        torch.randint(0, 5000, (40,)), torch.rand(40))))
    for L in (81, 1024) if quick else (81, 1024, 8192):
        out.append((f"select_positions L={L} top-n", lambda L=L: ks.select_positions(
            t(4, L), torch.rand(4, L) < 0.5, counts=torch.tensor([1, 2, 3, 4]))))
        if not quick:
            out.append((f"select_positions L={L} threshold", lambda L=L: ks.select_positions(
                t(4, L), torch.rand(4, L) < 0.5, threshold=0.3)))
    return out


def _tf32_cases(quick: bool):
    """fp32 with torch's tf32 matmuls allowed: the kernels' tf32 `tl.dot` path (IEEE=False)."""
    from fastmdm.kernels import attention as ka
    from fastmdm.kernels import select as ks

    def attn(d):
        q, k, v = (torch.randn(1, 2, 200, d).requires_grad_() for _ in range(3))
        ka.attention(q, k, v).sum().backward()

    out = [("attention fwd+bwd float32-tf32 D=128", lambda: attn(128))]
    if not quick:
        out.append(("attention fwd+bwd float32-tf32 D=64", lambda: attn(64)))
        out.append(("linear_token_stats float32-tf32", lambda: ks.linear_token_stats(
            torch.randn(96, 128), torch.randn(4096, 128), score="margin")))
    return out


def _resources(cubin: bytes, cuobjdump: Path) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([str(cuobjdump), "--dump-resource-usage", f.name], capture_output=True,
                              text=True, check=True).stdout
    m = re.search(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)", text)
    if not m:
        raise RuntimeError(f"cuobjdump gave no resource line:\n{text}")
    reg, stack, shared, local = map(int, m.groups())
    return {"registers": reg, "stack": stack, "static_shared": shared, "local": local}


def run(quick: bool, log=print) -> dict:
    rec = Recorder()
    rec.install()
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    failures = []
    t0 = time.perf_counter()
    from fastmdm.kernels import common

    groups = [(c, False) for c in _cases(quick)] + [(c, True) for c in _tf32_cases(quick)]
    orig_ieee = common.fp32_ieee
    for (name, thunk), tf32 in groups:
        rec.case = name
        common.fp32_ieee = (lambda t: False) if tf32 else orig_ieee
        t1 = time.perf_counter()
        try:
            thunk()
        except Exception as e:  # noqa: BLE001 - a compile error is a result, not a crash: report it, keep going
            failures.append({"case": name, "error": f"{type(e).__name__}: {str(e)[-2000:]}"})
            log(f"FAIL {name}: {type(e).__name__}: {str(e)[-400:]}")
            continue
        finally:
            common.fp32_ieee = orig_ieee
        log(f"ok   {name} ({time.perf_counter() - t1:.1f} s)")
    rows = []
    for r in rec.records:
        k = r["compiled"]
        res = _resources(k.asm["cubin"], cuobjdump)
        rows.append({"case": r["case"], "kernel": r["kernel"], **r["meta"], "num_warps": k.metadata.num_warps,
                     "num_stages": k.metadata.num_stages, **res,
                     "shared": max(int(k.metadata.shared), res["static_shared"]), "pruned": r["pruned"],
                     "cubin_bytes": len(k.asm["cubin"]), "arch": str(k.metadata.target.arch)})
    return {"target": "cuda sm_90a (H100 / H200)", "triton": triton.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "host": platform.processor() or platform.machine(),
            "quick": quick, "seconds": round(time.perf_counter() - t0, 1), "kernels": rows,
            "failures": failures, "limits": {"shared_per_block": SM90_SHARED_PER_BLOCK,
                                             "registers_per_thread": SM90_REGS_PER_THREAD}}


def _verdict(r: dict, res: dict) -> str:
    if r["pruned"]:
        return "pruned before launch"
    return "too big: the autotuner skips it" if r["shared"] > res["limits"]["shared_per_block"] else ""


def _markdown(res: dict, command: str) -> str:
    rows = res["kernels"]
    lines = [
        "# Triton kernels compiled for sm_90a (H100 / H200) without a GPU",
        "",
        f"`{command}` on a CPU-only machine ({res['host']}); Triton {res['triton']}, PyTorch {res['torch']}, "
        f"Python {res['python']}; {res['seconds']} s of cold compiles.",
        "Every launch of the real wrappers compiled (not run) through Triton's pipeline to a cubin by the "
        "ptxas bundled with Triton; every autotune config compiled. Resources from "
        "`cuobjdump --dump-resource-usage`; shared = the launch's shared memory in bytes (limit "
        f"{res['limits']['shared_per_block']:,} per block); local > 0 means register spills.",
        "These numbers say the kernels build for the card and fit it; timings need the GPU itself.",
        "",
        f"**{len(rows)} kernel builds, {len(res['failures'])} failures; "
        f"max shared {max((r['shared'] for r in rows), default=0):,} B; "
        f"max registers {max((r['registers'] for r in rows), default=0)}; "
        f"builds with spills: {sum(r['local'] > 0 for r in rows)}.**",
        "",
        "| case | kernel | blocks | warps | stages | registers | spill (local B) | shared B | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        blocks = " ".join(f"{k[6:]}={v}" for k, v in r.items() if k.startswith("BLOCK_"))
        lines.append(f"| {r['case']} | {r['kernel']} | {blocks} | {r['num_warps']} | {r['num_stages']} | "
                     f"{r['registers']} | {r['local']} | {r['shared']:,} | {_verdict(r, res)} |")
    for f in res["failures"]:
        lines += ["", f"FAILED: {f['case']}", "```", f["error"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the smaller matrix the test suite compiles")
    ap.add_argument("--json", default=None, help="write the JSON result here (default: with --quick none)")
    ap.add_argument("--out", default=None,
                    help="folder for kernels_sm90_compile.{md,json} (default: benchmarks/results/ for the full "
                         "matrix; --quick writes them only when this is given)")
    args = ap.parse_args(argv)
    res = run(args.quick, log=lambda m: print(m, file=sys.stderr, flush=True))
    command = "python benchmarks/compile_sm90.py" + (" --quick" if args.quick else "")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.out or not args.quick:
        out = Path(args.out or ROOT / "benchmarks" / "results")
        out.mkdir(parents=True, exist_ok=True)
        (out / "kernels_sm90_compile.json").write_text(json.dumps(res, indent=1))
        (out / "kernels_sm90_compile.md").write_text(_markdown(res, command))
    print(_markdown(res, command) if args.out or not args.quick else
          f"{len(res['kernels'])} builds, {len(res['failures'])} failures in {res['seconds']} s")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
