"""`fastmdm sudoku generate` and `fastmdm sudoku grade`: Sudoku data from the native engine."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from fastmdm.cli import (
    CommandError,
    UsageError,
    add_command,
    add_generate_outputs,
    check_writable,
    count,
    int_at_least,
    write_text_output,
)
from fastmdm.sudoku import engine, grids


def format_lines(data: dict[str, np.ndarray]) -> str:
    """The txt format: `<puzzle> <solution> <hardest strategy>` per line, '.' for a blank."""
    p = np.where(data["puzzles"] == 0, ord("."), data["puzzles"] + ord("0")).astype(np.uint8)
    s = (data["solutions"] + ord("0")).astype(np.uint8)
    names = [engine.DIFFICULTY_NAMES[d] for d in data["difficulty"]]
    return "".join(f"{a.tobytes().decode()} {b.tobytes().decode()} {n}\n" for a, b, n in zip(p, s, names))


def cmd_generate(args: argparse.Namespace) -> int:
    fmt = args.format or ("npz" if args.out and args.out.endswith(".npz") else "txt")
    if fmt == "npz" and (args.out is None or args.out == "-"):
        raise UsageError("--format npz needs --out FILE: binary data does not go to stdout")
    check_writable("--out", args.out)
    try:
        data = engine.generate(args.n, args.split, args.seed, threads=args.threads, progress=not args.quiet,
                               min_clues=args.min_clues, max_clues=args.max_clues)
    except ValueError as e:
        for name in ("min_clues", "max_clues"):
            if str(e).startswith(name):
                raise UsageError(f"--{name.replace('_', '-')}: {e}") from None
        raise CommandError(str(e)) from None
    try:
        if fmt == "npz":
            meta = {
                "split": np.array(args.split),
                "seed": np.array(args.seed, np.uint64),
                "strategy_names": np.array(engine.DIFFICULTY_NAMES),
            }
            grids.save_npz(args.out, {**data, **meta})
        else:
            write_text_output(args.out, format_lines(data))
    except OSError as e:
        raise CommandError(f"--out {args.out}: cannot write it ({e.strerror or e})") from None
    if not args.quiet and args.out not in (None, "-"):
        d = data["difficulty"]
        clues = (data["puzzles"] > 0).sum(1)
        mix = ", ".join(f"{engine.DIFFICULTY_NAMES[k]} {np.mean(d == k):.1%}" for k in np.unique(d))
        if len(d):
            print(f"wrote {len(d)} {args.split} puzzles to {args.out} ({fmt}); mean clues {clues.mean():.2f}; {mix}",
                  file=sys.stderr)
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    lines = sys.stdin if args.file == "-" else None
    try:
        handle = lines or open(args.file, encoding="utf-8")
    except OSError as e:
        raise CommandError(f"{args.file}: cannot read it ({e.strerror or e}); check the path") from None
    out = []
    with handle:
        try:
            numbered = list(enumerate(handle, start=1))
        except UnicodeDecodeError:
            raise CommandError(f"{args.file}: not a text file (puzzles are lines of 81 characters)") from None
        for i, raw in numbered:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                puzzle = grids.parse_puzzle(text.split()[0], line=i)
                g = engine.grade(puzzle, line=i)
            except ValueError as e:
                raise CommandError(f"{args.file}: {e}; fix or remove that line") from None
            if args.pretty:
                out.append(f"# line {i}: {g.name}\n{grids.pretty(puzzle)}\n{grids.pretty(g.solution)}\n")
            else:
                out.append(f"{grids.format_grid(puzzle)} {grids.format_grid(g.solution)} {g.name}\n")
    sys.stdout.write("".join(out))
    return 0


def register(sudoku_subparsers, top_subparsers=None) -> None:
    p = add_command(
        sudoku_subparsers, "generate", cmd_generate,
        "generate unique-solution puzzles (standard or hard split)",
        description="Generate unique-solution Sudoku puzzles with the native engine. standard: the seven "
        "human techniques finish them; hard: they do not. Same seed, same bytes, for any --threads.",
    )
    p.add_argument("--n", type=count, required=True, help="number of puzzles")
    p.add_argument("--split", choices=engine.SPLITS, default="standard", help="which kind of puzzle")
    p.add_argument("--seed", type=count, default=0, help="puzzle i depends only on (seed, split, i)")
    add_generate_outputs(p, "txt: '<puzzle> <solution> <hardest technique>' per line; npz: int8 arrays "
                         "(puzzles, solutions, order, strategy, difficulty)")
    p.add_argument("--min-clues", type=int_at_least(17), default=None,
                   help="stop removing clues at this many (default: minimal puzzles)")
    p.add_argument("--max-clues", type=int_at_least(17), default=None,
                   help="reject puzzles with more clues (default: no limit)")

    g = add_command(
        sudoku_subparsers, "grade", cmd_grade,
        "grade puzzles from a file with the seven human techniques",
        description="Read puzzles (one per line, '.' or '0' for a blank; '#' comments) and print "
        "'<puzzle> <solution> <hardest technique>' per line ('beyond_seven' if the seven cannot finish it).",
    )
    g.add_argument("file", help="puzzle file, or - for stdin")
    g.add_argument("--pretty", action="store_true", help="print boxed grids")
