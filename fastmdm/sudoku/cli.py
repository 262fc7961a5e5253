"""`fastmdm sudoku ...` and `fastmdm demo`.

Data commands (generate, grade) come from `fastmdm.sudoku.cli_data`; training (train) from
`fastmdm.sudoku.cli_train`; model commands (eval, solve, and the top-level demo) from
`fastmdm.sudoku.cli_model`; compare from `fastmdm.sudoku.cli_compare`; the error analysis by hardness
class (analyze) from `fastmdm.sudoku.cli_analyze`. Each module has `register(sudoku_subparsers, top_subparsers)`.
"""
from __future__ import annotations

from fastmdm.cli import HelpFormatter, add_debug


def register(top) -> None:
    from fastmdm.sudoku import cli_analyze, cli_compare, cli_data, cli_model, cli_train  # noqa: PLC0415
    p = top.add_parser("sudoku", help="Sudoku puzzles: generate data, train, evaluate, solve, analyze errors",
                       formatter_class=HelpFormatter)
    add_debug(p)
    sub = p.add_subparsers(dest="sudoku_command", metavar="SUBCOMMAND")
    sub.required = True
    for mod in (cli_data, cli_train, cli_model, cli_compare, cli_analyze):
        mod.register(sub, top)
