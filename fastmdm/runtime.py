"""Process-level settings for running fastmdm on CPU.

`keep_freed_memory()`: every `fastmdm` command calls it first; a program that decodes or trains with the
library on Linux can call it too (`fastmdm.keep_freed_memory()`).
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process. Decoding frees and reallocates the same large
    activations at every model call; by default glibc hands blocks above its mmap threshold back to the OS
    and trims the heap, and the next call page-faults them in again, a large share of a small model's
    forward on CPU (benchmarks/results/cpu_runtime_notes.md). For a process that decodes or trains until it
    ends, keeping its peak memory is the better trade (it is not given back to the OS before exit). Returns
    whether it applied: not off glibc, nor when the user set MALLOC_* thresholds."""
    if not sys.platform.startswith("linux") or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
