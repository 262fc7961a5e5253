"""The `fastmdm` command line. Subcommands live beside the code they drive and register themselves here."""
from __future__ import annotations

import argparse
import sys

from fastmdm.runtime import keep_freed_memory


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
