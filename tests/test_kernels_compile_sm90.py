"""Every Triton kernel builds for sm_90a (H100 / H200) and fits the card, checked without a GPU.

The interpreter tests check what the kernels compute; this one checks what only a GPU compile shows:
`benchmarks/compile_sm90.py --quick` lowers each kernel (every autotune config) through Triton's whole
pipeline to a cubin with the ptxas shipped in the triton wheel, in a fresh process without
TRITON_INTERPRET, and reads registers and shared memory back from the cubin.
"""
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("sm90") / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(out.parent / "cache")  # a cold cache: every kernel really compiles
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compile_sm90.py"), "--quick", "--json", str(out)],
                       env=env, capture_output=True, text=True, timeout=1200)
    assert out.is_file(), p.stderr[-4000:]
    return json.loads(out.read_text()), p


def test_every_kernel_compiles_to_an_sm90_cubin(report):
    res, p = report
    assert res["failures"] == [], res["failures"]
    assert p.returncode == 0, p.stderr[-4000:]
    kernels = {r["kernel"] for r in res["kernels"]}
    assert kernels == {"_logits_partial_kernel", "merge_kernel", "_linear_partial_kernel", "_select_kernel",
                       "_attn_fwd_kernel", "_attn_bwd_dkdv_kernel", "_attn_bwd_dq_kernel", "_ce_rows_kernel"}
    for r in res["kernels"]:
        assert r["arch"] == "90" and r["cubin_bytes"] > 0, r


def test_each_launch_has_a_config_that_fits_the_card(report):
    res, _ = report
    limits = res["limits"]
    assert limits == {"shared_per_block": 232_448, "registers_per_thread": 255}
    usable = defaultdict(list)
    for r in res["kernels"]:
        if not r["pruned"]:
            usable[(r["case"], r["kernel"])].append(r["shared"] <= limits["shared_per_block"]
                                                    and r["registers"] <= limits["registers_per_thread"])
    assert usable
    assert all(any(v) for v in usable.values()), {k: v for k, v in usable.items() if not any(v)}


def test_the_forward_pruner_predicts_shared_memory_exactly_and_drops_only_what_does_not_fit(report):
    from fastmdm.kernels.attention import fwd_shared_bytes
    res, _ = report
    fwd = [r for r in res["kernels"] if r["kernel"] == "_attn_fwd_kernel"]
    assert fwd
    for r in fwd:
        el = 4 if "float32" in r["case"] else 2
        need = fwd_shared_bytes(el, r["BLOCK_D"], r["BLOCK_M"], r["BLOCK_N"], r["num_stages"])
        assert r["shared"] == need, r
        assert r["pruned"] == (need > res["limits"]["shared_per_block"]), r
