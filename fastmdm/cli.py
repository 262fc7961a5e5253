"""The `fastmdm` command line. Subcommands live beside the code they drive and register themselves here."""
from __future__ import annotations

import argparse
import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process. Decoding frees and reallocates the same large
    activations at every model call; by default glibc hands blocks above its mmap threshold back to the OS
    and trims the heap, and the next call page-faults them in again. On a 2-core VM that cost a third of a
    Sudoku forward (55k page faults per call). A command-line run is one job, so keeping its peak memory is
    the better trade. Returns whether it applied: not off glibc, nor when the user set MALLOC_* thresholds."""
    if not sys.platform.startswith("linux") or any(
            k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastmdm", description="Fast adaptive decoding for masked diffusion models")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from fastmdm import example  # noqa: PLC0415
    example.register(sub)
    try:
        from fastmdm.sudoku import cli as sudoku_cli  # noqa: PLC0415
    except ImportError as e:  # the native engine was not built
        sudoku_error = e
        p = sub.add_parser("sudoku", help="Sudoku data, training, evaluation (needs the native engine)")
        p.set_defaults(func=lambda args: sys.exit(f"fastmdm sudoku is unavailable: {sudoku_error}"))
    else:
        sudoku_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
