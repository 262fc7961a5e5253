"""`fastmdm.keep_freed_memory` (every CLI command calls it first): after it, reallocating a freed large tensor
costs no page faults."""
import os
import platform
import subprocess
import sys

import pytest

PROBE = r"""
import resource, sys, torch
from fastmdm import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
def faults_of_alloc():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(16 << 20)  # 64 MiB, written
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
for _ in range(16):  # the first ones fault the memory in: the heap grows until an aligned 64 MiB block
    faults_of_alloc()  # fits in a hole (2 to 7 allocations in 6 trial runs here), and then it stays
print(applied, sum(faults_of_alloc() for _ in range(4)))
"""


def probe(mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning applies to glibc only")
def test_a_reallocated_block_is_reused_without_page_faults():
    applied, faults = probe("tuned")
    assert applied == "True"
    assert faults < 500  # 4 x 64 MiB is 65,536 pages: reused memory faults none of them
    _, default_faults = probe("default")
    assert default_faults > 60_000  # glibc's default unmaps the block and faults it in again each time


def test_user_malloc_settings_are_respected(monkeypatch):
    from fastmdm import keep_freed_memory
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert keep_freed_memory() is False
