"""`fastmdm zebra generate|check|solve`: Zebra puzzles from the native engine, the exact checker and the solver."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from fastmdm.cli import (
    CommandError,
    HelpFormatter,
    UsageError,
    add_command,
    add_debug,
    add_generate_outputs,
    check_writable,
    count,
    device,
    int_at_least,
    positive_int,
    read_data_file,
    strategy,
    write_text_output,
)
from fastmdm.zebra import engine, files
from fastmdm.zebra.data import decode
from fastmdm.zebra.engine import MASK_ID, TECHNIQUES

_TASK_OPTIONS = ("houses", "attributes", "max_clues")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _task_from(args, defaults: bool) -> engine.Task | None:
    """The task of --houses/--attributes/--max-clues/--logic-only (None when none is given and not `defaults`)."""
    given = {k: getattr(args, k) for k in _TASK_OPTIONS if getattr(args, k) is not None}
    if getattr(args, "logic_only", False):
        given["logic_only"] = True
    if not given and not defaults:
        return None
    try:
        return engine.Task(**given)
    except ValueError as e:
        name = str(e).split(" ", 1)[0]
        raise UsageError(f"{_option(name)}: {e}" if name in _TASK_OPTIONS else str(e)) from None


def cmd_generate(args: argparse.Namespace) -> int:
    fmt = args.format or ("npz" if args.out and args.out.endswith(".npz") else "txt")
    if fmt == "npz" and (args.out is None or args.out == "-"):
        raise UsageError("--format npz needs --out FILE: binary data does not go to stdout")
    if args.seed >= 2**64:
        raise UsageError(f"--seed: expected an integer below 2**64, got {args.seed}")
    task = _task_from(args, defaults=True)
    check_writable("--out", args.out)
    try:
        p = engine.generate(args.n, task, args.seed, threads=args.threads, progress=not args.quiet)
    except ValueError as e:
        raise CommandError(str(e)) from None
    try:
        if fmt == "npz":
            files.save_npz(args.out, p.tokens, task, seed=args.seed, order=p.order, technique=p.technique, clue=p.clue)
        else:
            write_text_output(args.out, files.format_lines(p.tokens, task, seed=args.seed))
    except OSError as e:
        raise CommandError(f"--out {args.out}: cannot write it ({e.strerror or e})") from None
    if not args.quiet and args.out not in (None, "-") and len(p.tokens):
        print(f"wrote {len(p.tokens)} puzzles ({task.describe()}) to {args.out} ({fmt}); clues per puzzle "
              f"{p.clues.mean():.1f} (min {p.clues.min()}, max {p.clues.max()}); {np.mean(p.guesses > 0):.1%} need a "
              "guess beyond propagation", file=sys.stderr)
    return 0


def _read(args) -> tuple[np.ndarray, engine.Task, list[str]]:
    """(tokens, task, a label per puzzle) from FILE: npz (by content) or text ('-' = stdin)."""
    return read_data_file(args.file, _task_from(args, defaults=False), files, "fastmdm zebra generate",
                          "--houses, --attributes and --max-clues")


def _explain(row: np.ndarray, task: engine.Task, r: engine.Check, i: int) -> str:
    """Why puzzle i of a check is not solved."""
    grid = row[task.cell_positions].reshape(task.houses, task.attributes)
    masked = int((grid == MASK_ID).sum())
    if masked:
        return f"{masked} cell{'s are' if masked > 1 else ' is'} masked"
    for a in range(task.attributes):
        if len(set(grid[:, a].tolist())) < task.houses:
            values = " ".join(map(str, grid[:, a]))
            return f"attribute {a} is not a permutation of its values over the houses ({values})"
    bad = np.flatnonzero(~r.clue_ok[i])
    if len(bad):
        clue = decode(row, task)[0].clues
        slots = [s for s in range(task.max_clues)
                 if not (row[s * 5:(s + 1) * 5] == engine.PAD_ID).all()]
        return f"clue {int(bad[0])} ({clue[slots.index(int(bad[0]))].text()}) does not hold" + \
            (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
    if r.solutions[i] != 1:
        return f"its clues have {'no' if r.solutions[i] == 0 else 'more than one'} solution"
    c = int(np.argmin(r.cell_correct[i]))
    return f"cell (house {c // task.attributes}, attribute {c % task.attributes}) is wrong"


def _check_all(tokens, task, threads, quiet: bool) -> engine.Check:
    n = len(tokens)
    bar = None
    if not quiet and n >= 100_000:
        from tqdm import tqdm  # noqa: PLC0415 (only for the progress bar)

        bar = tqdm(total=n, desc="check", unit="puzzle", smoothing=0.1)
    parts = []
    try:
        step = 1 << 15
        for a in range(0, n, step):
            parts.append(engine.check(tokens[a:a + step], task, threads=threads))
            if bar is not None:
                bar.update(len(parts[-1].solved))
    finally:
        if bar is not None:
            bar.close()
    if not parts:
        parts.append(engine.check(np.zeros((0, task.length), np.int8), task))
    return engine.Check(*(np.concatenate([getattr(p, f) for p in parts]) for f in engine.Check._fields))


def cmd_check(args: argparse.Namespace) -> int:
    tokens, task, labels = _read(args)
    try:
        r = _check_all(tokens, task, args.threads, args.quiet)
    except ValueError as e:
        raise CommandError(f"{args.file}: {e}") from None
    n = len(tokens)
    if not args.summary:
        lines = [f"{labels[i]}: ok" if r.solved[i] else f"{labels[i]}: not solved: {_explain(tokens[i], task, r, i)}"
                 for i in range(n)]
        sys.stdout.write("".join(line + "\n" for line in lines))
    solved = int(r.solved.sum())
    share = f" ({solved / n:.2%})" if n else ""
    acc = r.cell_accuracy.mean() if n else 1.0
    print(f"{n} puzzle{'' if n == 1 else 's'} of {task.describe()}: {solved} solved{share}, {n - solved} not; "
          f"cells correct: {acc:.2%}")
    if solved < n:
        i = int(np.argmin(r.solved))
        more = f" (and {n - solved - 1} more)" if n - solved > 1 else ""
        raise CommandError(f"{labels[i]}: {_explain(tokens[i], task, r, i)}{more}")
    return 0


def _describe_steps(s: engine.Solved, i: int, task: engine.Task) -> list[str]:
    n = task.attributes
    out = []
    steps = sorted((int(o), c) for c, o in enumerate(s.order[i]) if o >= 0)
    for o, c in steps:
        t = int(s.technique[i, c])
        why = TECHNIQUES[t] + (f", clue {int(s.clue[i, c])}" if s.clue[i, c] >= 0 else "")
        out.append(f"  step {o}: house {c // n} attribute {c % n} = {int(s.solution[i, c])} ({why})")
    return out


def cmd_solve(args: argparse.Namespace) -> int:
    tokens, task, labels = _read(args)
    if not args.keep_cells:
        tokens = tokens.copy()
        tokens[:, task.cell_positions] = MASK_ID
    if args.checkpoint is not None:
        from fastmdm.zebra.cli_model import model_solve  # noqa: PLC0415
        return model_solve(args, tokens, task, labels)
    try:
        s = engine.solve(tokens, task, threads=args.threads)
    except ValueError as e:
        raise CommandError(f"{args.file}: {e}") from None
    lines = []
    for i in range(len(tokens)):
        cnt = int(s.count[i])
        if cnt == 0:
            lines.append(f"{labels[i]}: no solution")
            continue
        what = "unique solution" if cnt == 1 else "two or more solutions; the first found"
        lines.append(f"{labels[i]}: {what}, {int(s.guesses[i])} guess{'' if s.guesses[i] == 1 else 'es'}, "
                     f"{int(s.rounds[i])} propagation rounds")
        grid = s.solution[i].reshape(task.houses, task.attributes)
        lines.append("  grid (a house per group): " + files.format_grid(grid))
        if not args.no_steps:
            lines += _describe_steps(s, i, task)
    sys.stdout.write("".join(line + "\n" for line in lines))
    none = np.flatnonzero(s.count == 0)
    if len(none):
        more = f" (and {len(none) - 1} more)" if len(none) > 1 else ""
        raise CommandError(f"{labels[int(none[0])]}: the clues and given cells have no solution{more}")
    return 0


def _task_arguments(p, defaults: bool) -> None:
    d = engine.Task()

    def text(what: str, value) -> str:
        return what + (f" (default: {value})" if defaults else
                       " (default: the file's; needed for a text file without a header)")

    p.add_argument("--houses", type=int_at_least(2), default=None, metavar="M", help=text("number of houses", d.houses))
    p.add_argument("--attributes", type=int_at_least(2), default=None, metavar="N",
                   help=text("number of attributes", d.attributes))
    p.add_argument("--max-clues", type=positive_int, default=None, metavar="K",
                   help=text("clue slots of the encoding; minimal puzzles with more clues are redrawn",
                             "houses * attributes"))
    if defaults:
        p.add_argument("--logic-only", action="store_true",
                       help="keep only puzzles that propagation solves without a guess")


def register(top) -> None:
    p = top.add_parser("zebra", help="Zebra (Einstein) puzzles: data, checking, solving, training, evaluation",
                       formatter_class=HelpFormatter)
    add_debug(p)
    sub = p.add_subparsers(dest="zebra_command", metavar="SUBCOMMAND")
    sub.required = True

    g = add_command(
        sub, "generate", cmd_generate, "generate minimal unique Zebra puzzles with their solutions",
        description="Generate Zebra puzzles with the native engine: a random solution grid, clues true of it drawn "
        "until the solver proves it unique, then pruned to a minimal set. Same seed, same bytes, for any --threads. "
        "See docs/zebra.md.",
    )
    g.add_argument("--n", type=count, required=True, metavar="COUNT", help="number of puzzles")
    g.add_argument("--seed", type=count, default=0, help="puzzle i depends only on (seed, i) and the task")
    _task_arguments(g, defaults=True)
    add_generate_outputs(g, "txt: a header line, then '<clues> | <grid>' per line; npz: int8 tokens [n, L], the "
                         "ordered solve and the task")

    c = add_command(
        sub, "check", cmd_check, "check completed puzzles exactly",
        description="Check every completed grid against all-different, every clue, and the puzzle's solution. Prints "
        "one line per puzzle and a summary; exits with 1 naming the first puzzle that is not solved.",
    )
    c.add_argument("file", help="a txt or npz file of `fastmdm zebra generate` (or the same format), - for stdin")
    _task_arguments(c, defaults=False)
    c.add_argument("--summary", action="store_true", help="only the summary line, not one line per puzzle")
    c.add_argument("--threads", type=positive_int, default=None, help="worker threads (default: all cores)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    s = add_command(
        sub, "solve", cmd_solve, "solve puzzles and show the solver's deduction order",
        description="Solve each puzzle's clues with the native solver. Prints the solution count, the grid, and each "
        "cell's step, technique and clue in the order the solver placed them.",
    )
    s.add_argument("file", help="a txt or npz file of `fastmdm zebra generate` (or the same format), - for stdin")
    _task_arguments(s, defaults=False)
    s.add_argument("--keep-cells", action="store_true",
                   help="treat the file's visible cells as givens ('.' unknown); by default only the clues count")
    s.add_argument("--no-steps", action="store_true", help="only the count and the grid, not the deduction steps")
    s.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="fill the cells with this model (`fastmdm zebra train --out DIR`) instead of the native solver")
    s.add_argument("--strategy", type=strategy, default="margin", help="with --checkpoint: the decoding order")
    s.add_argument("--device", type=device, default="cpu", help="with --checkpoint: where the model runs")
    s.add_argument("--threads", type=positive_int, default=None, help="worker threads (default: all cores)")

    from fastmdm.zebra import cli_model  # noqa: PLC0415 (torch loads only when a model command runs)
    cli_model.register(sub)
