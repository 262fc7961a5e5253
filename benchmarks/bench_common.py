"""Helpers the CPU benchmarks share: the machine, the commit, and a timed call."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from fastmdm.adapters import cpu_model

__all__ = ["cpu_model", "git_commit", "timed"]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def timed(fn):
    """(fn(), wall seconds, process CPU seconds, load average before, after)."""
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return out, wall, cpu, load0, os.getloadavg()[0]
