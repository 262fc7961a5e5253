"""Helpers the CPU benchmarks share: the machine, the commit, and a timed call."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from fastmdm.adapters import cpu_model

__all__ = ["LOAD_NOTE", "RESULTS", "cpu_model", "git_commit", "info_line", "native_info", "timed", "write_results"]


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


RESULTS = Path(__file__).resolve().parent / "results"

#: what the native-engine benchmarks say about a shared machine
LOAD_NOTE = [
    "The machine is shared with other engineers' jobs: `load` is the 1-minute load average before/after a run,",
    "`cores used` = CPU time / wall time of this process. Rates per CPU-second do not depend on the load.",
]


def native_info(script: str, quick: bool) -> dict:
    """The run's command, date, machine, versions and commit, as every native-engine benchmark records them."""
    import platform

    import numpy as np

    from fastmdm import _native
    return {
        "command": f"python benchmarks/{script}" + (" --quick" if quick else ""),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "compiler": _native.compiler(),
        "git": git_commit(),
    }


def info_line(info: dict) -> str:
    return (f"{info['date_utc']} UTC, {info['cpu']}, {info['cores']} cores, Python {info['python']}, numpy "
            f"{info['numpy']}, {info['compiler']}, git {info['git']}. Command: `{info['command']}`.")


def write_results(stem: str, info: dict, rows: list, lines: list[str]) -> None:
    """results/<stem>.json ({"info", "rows"}) and results/<stem>.md (`lines`), and the markdown on stdout."""
    import json
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
