"""`fastmdm sudoku compare`: MDMs (per decoding order) against autoregressive baselines on the same puzzles."""
from __future__ import annotations

import sys

from fastmdm.cli import CommandError, UsageError, add_command, check_writable, device, positive_int, strategy_list
from fastmdm.sudoku import cli_common as common
from fastmdm.sudoku.evaluate import DEFAULT_STRATEGIES


def _checkpoint_list(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UsageError("--checkpoints: expected comma-separated checkpoint directories ('shipped' for the "
                         "shipped MDM)")
    return names


def cmd_compare(args) -> int:
    from pathlib import Path  # noqa: PLC0415

    from fastmdm.checkpoint import atomic_write_json, atomic_write_text  # noqa: PLC0415
    from fastmdm.sudoku import compare  # noqa: PLC0415
    from fastmdm.sudoku.cli_model import EVAL_N  # noqa: PLC0415
    from fastmdm.sudoku.data import test_set  # noqa: PLC0415
    common.apply_threads(args)
    checkpoints = _checkpoint_list(args.checkpoints)
    for ck in checkpoints:
        if ck != compare.SHIPPED and not Path(ck).is_dir():
            raise CommandError(f"--checkpoints: {ck}: no such checkpoint directory ('shipped' names the shipped "
                               "model)")
    for opt, path in (("--json", args.json), ("--md", args.md), ("--plot", args.plot)):
        check_writable(opt, path)
    n = args.n or EVAL_N
    sets = {s: test_set(s, n, args.cache_dir) for s in args.split}
    print(f"fastmdm sudoku compare: {len(checkpoints)} checkpoints on {n:,} puzzles per split "
          f"({', '.join(args.split)})", file=sys.stderr, flush=True)
    from fastmdm.checkpoint import CheckpointError  # noqa: PLC0415
    try:
        with common.model_failures():
            rows = compare.compare(checkpoints, sets, strategies=args.strategies, batch_size=args.batch_size,
                                   device=args.device, progress=True, log=lambda m: print(m, file=sys.stderr),
                                   arm_cells_given=args.arm_cells_given)
    except (FileNotFoundError, CheckpointError) as e:
        raise CommandError(f"--checkpoints: {e}") from e
    table = compare.format_markdown(rows)
    print(table)
    try:
        if args.json:
            atomic_write_json(args.json, {"settings": {"checkpoints": checkpoints, "n": n, "splits": args.split,
                                                       "strategies": list(args.strategies), "device": args.device,
                                                       "decoding": "one cell per call, temperature 0"},
                                          "rows": rows})
        if args.md:
            atomic_write_text(args.md, table + "\n")
        if args.plot:
            compare.plot(rows, args.plot)
    except OSError as e:
        raise CommandError(f"cannot write {e.filename or 'the output'}: {e.strerror or e}") from None
    except RuntimeError as e:  # matplotlib missing
        raise CommandError(f"--plot: {e}") from None
    return 0


def register(sudoku_sub, top_sub=None) -> None:
    from fastmdm.sudoku.cli_model import split_list  # noqa: PLC0415
    p = add_command(sudoku_sub, "compare", cmd_compare,
                    "MDMs per decoding order against autoregressive baselines, with 95% intervals",
                    description="Evaluate several checkpoints on the same test puzzles: an MDM gives one row per "
                                "decoding strategy, an ARM (train --arch arm-...) one row in its own order.")
    p.add_argument("--checkpoints", default="shipped", metavar="DIR,DIR,...",
                   help="comma-separated checkpoint directories; 'shipped' is the shipped MDM (default: shipped)")
    p.add_argument("--split", type=split_list, default=["standard", "hard"],
                   help="standard, hard, or both as 'standard,hard' (default: both)")
    p.add_argument("--n", type=positive_int, default=None, help="puzzles per split (default: 1000)")
    p.add_argument("--strategies", type=strategy_list, default=DEFAULT_STRATEGIES,
                   help="decoding strategies of the MDMs (default: random,confidence,margin,entropy)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the rows as JSON")
    p.add_argument("--md", default=None, metavar="PATH", help="write the markdown table")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a bar chart with the 95%% intervals")
    p.add_argument("--arm-cells-given", action="store_true",
                   help="each ARM also gets a row with the blanks written in its training order and only the digits "
                        "its own (where it writes apart from what)")
    p.add_argument("--cache-dir", default=None, help="where generated test sets are cached (default: not cached)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="puzzles per model call")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N or mps")
    common.threads_arg(p)
