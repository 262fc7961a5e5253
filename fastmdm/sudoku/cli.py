"""`fastmdm sudoku ...` and `fastmdm demo`.

Data commands (generate) come from `fastmdm.sudoku.cli_data`; model commands (train, eval, solve, and
the top-level demo) from `fastmdm.sudoku.cli_model`. Each module has `register(sudoku_subparsers,
top_subparsers)`.
"""
from __future__ import annotations

import importlib


def register(top) -> None:
    p = top.add_parser("sudoku", help="Sudoku puzzles: generate data, train, evaluate, solve")
    sub = p.add_subparsers(dest="sudoku_command", metavar="SUBCOMMAND")
    sub.required = True
    for name in ("fastmdm.sudoku.cli_data", "fastmdm.sudoku.cli_model"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        mod.register(sub, top)
