"""`fastmdm sudoku analyze`: where a Sudoku MDM's errors live, by the hardness class of each cell
(`fastmdm.sudoku.analyze`), written as JSON, markdown and a PNG figure."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from fastmdm.cli import CommandError, add_command, count, positive_int, strategy_list
from fastmdm.sudoku import cli_common as common
from fastmdm.sudoku.analyze import DEFAULT_ORDERS, DEFAULT_RATES

#: puzzles per test split when --n is not given
ANALYZE_N = 200
DEFAULT_OUT = "benchmarks/results"
DEFAULT_NAME = "sudoku_analyze"


def rate_list(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        rates = ()
    if not rates or not all(0 < r <= 1 for r in rates):
        raise argparse.ArgumentTypeError(f"expected comma-separated masking rates in (0, 1] such as 0.25,0.5,1, "
                                         f"got {text!r}")
    return rates


def report_name(text: str) -> str:
    if not text or any(c in text for c in "/\\") or text.startswith("."):
        raise argparse.ArgumentTypeError(f"expected a file name stem such as sudoku_analyze, got {text!r}")
    return text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _command_line(args) -> str:
    """The command as it was run, from the parsed options (defaults left out)."""
    parts = ["fastmdm", "sudoku", "analyze"]
    opts = [("--checkpoint", args.checkpoint, None), ("--file", args.file, None),
            ("--split", ",".join(args.split) if args.split else None, None), ("--n", args.n, None),
            ("--strategies", ",".join(args.strategies), ",".join(DEFAULT_ORDERS)),
            ("--rates", ",".join(f"{r:g}" for r in args.rates), ",".join(f"{r:g}" for r in DEFAULT_RATES)),
            ("--seed", args.seed, 0), ("--batch-size", args.batch_size, 256), ("--device", args.device, "cpu"),
            ("--threads", args.threads, None), ("--precision", args.precision, "fp32"),
            ("--out", args.out, DEFAULT_OUT), ("--name", args.name, DEFAULT_NAME)]
    for flag, value, default in opts:
        if value is not None and value != default:
            parts += [flag, str(value)]
    if args.no_plot:
        parts.append("--no-plot")
    return shlex.join(parts)


def _load_sets(args) -> dict:
    from fastmdm.sudoku import data as sdata  # noqa: PLC0415
    from fastmdm.sudoku.cli_model import load_eval_sets  # noqa: PLC0415
    if args.file:
        return load_eval_sets(args)
    n = ANALYZE_N if args.n is None else args.n
    return {s: sdata.test_set(s, n, args.cache_dir) for s in (args.split or ["standard", "hard"])}


def cmd_analyze(args) -> int:
    from tqdm import tqdm  # noqa: PLC0415

    from fastmdm.sudoku import analyze as an  # noqa: PLC0415
    from fastmdm.sudoku import model as smodel  # noqa: PLC0415
    from fastmdm.sudoku.arm import calls_per_blank  # noqa: PLC0415
    common.apply_threads(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {args.out}: exists and is not a directory; pass a directory")
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401, PLC0415
        except ImportError:
            raise CommandError("the figure needs matplotlib: pip install 'fastmdm[plot]', or pass --no-plot") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"--out {args.out}: cannot create it ({e.strerror or e})") from None
    precision = smodel.resolve_precision(args.precision, args.device)
    model, _ = common.load_model(args, args.device, precision)
    arms = {}
    for d in args.arm or []:
        from fastmdm.checkpoint import CheckpointError  # noqa: PLC0415
        from fastmdm.sudoku.arm import is_arm  # noqa: PLC0415
        try:
            m, _ = smodel.load(d, device=args.device)
        except (FileNotFoundError, NotADirectoryError, CheckpointError) as e:
            raise CommandError(f"--arm {d}: {e}") from None
        if not is_arm(m):
            raise CommandError(f"--arm {d}: not an autoregressive baseline (train one with --arch arm-...)")
        arms[f"arm-{m.arm_order}"] = m
    sets = _load_sets(args)
    batch_blanks = {name: [int((d["puzzles"][i:i + args.batch_size] == 0).sum(1).max())
                           for i in range(0, len(d["puzzles"]), args.batch_size)] for name, d in sets.items()}
    calls = sum(an.model_calls(len(d["puzzles"]), batch_blanks[name], rates=args.rates, orders=len(args.strategies),
                               batch_size=args.batch_size) for name, d in sets.items())
    calls += sum(calls_per_blank(m.arm_order) * sum(b) + len(b)   # decoding, then teacher forcing
                 for m in arms.values() for b in batch_blanks.values())
    sizes = ", ".join(f"{name} {len(d['puzzles']):,}" for name, d in sets.items())
    print(f"fastmdm sudoku analyze: {sum(len(d['puzzles']) for d in sets.values()):,} puzzles ({sizes}), "
          f"{_plural(len(args.rates), 'masking rate')}, {_plural(len(args.strategies), 'order')}: about {calls:,} "
          f"model calls of up to {args.batch_size} puzzles", file=sys.stderr, flush=True)
    splits = {}
    t0 = time.perf_counter()
    with common.model_failures(), tqdm(total=calls, desc="analyze", unit="call", leave=False) as bar:
        for name, d in sets.items():
            bar.set_description(f"analyze {name}")
            splits[name] = an.analyze(model, d["puzzles"], d["solutions"], orders=args.strategies, rates=args.rates,
                                      seed=args.seed, batch_size=args.batch_size, threads=args.threads, bar=bar,
                                      arms=arms)
    ck = args.checkpoint or "the shipped model (fastmdm/sudoku/checkpoints/sudoku-mdm)"
    report = {"settings": {"checkpoint": ck, "arm_checkpoints": list(args.arm or []),
                           "splits": list(sets), "n": {k: len(d["puzzles"]) for k, d in sets.items()},
                           "orders": list(args.strategies), "rates": list(args.rates), "seed": args.seed,
                           "k": 1, "temperature": 0.0, "batch_size": args.batch_size, "device": args.device,
                           "precision": precision, "seconds": round(time.perf_counter() - t0, 1)},
              "environment": an.environment(_command_line(args), args.device, args.threads),
              "classes": list(an.CLASS_LABELS), "splits": splits}
    try:
        paths = an.write_report(report, out, args.name, figure=not args.no_plot)
    except OSError as e:
        raise CommandError(f"cannot write {e.filename or 'the report'}: {e.strerror or e}") from None
    print(an.format_markdown({**report, "figure": paths["png"].name if "png" in paths else None}))
    print(f"fastmdm sudoku analyze: wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def register(sudoku_sub, top_sub=None) -> None:
    from fastmdm.sudoku.cli_model import puzzle_set_args  # noqa: PLC0415
    p = add_command(sudoku_sub, "analyze", cmd_analyze,
                    "where the model's errors live: error and picks by the hardness class of each cell",
                    description="On test puzzles: the model's one-call error and loss per hardness class on random "
                                "masks of the blanks; what each decoding order picks (the class of each chosen cell "
                                "on the board before its step) and how often it is wrong; and where failed decodes "
                                "go wrong first. Writes NAME.json, NAME.md and NAME.png into --out.")
    common.checkpoint_arg(p)
    puzzle_set_args(p)
    p.add_argument("--n", type=positive_int, default=None,
                   help=f"puzzles per split (default: {ANALYZE_N}; with --file, all of them)")
    p.add_argument("--strategies", type=strategy_list, default=DEFAULT_ORDERS,
                   help="comma-separated decoding orders (default: random,confidence,margin,entropy)")
    p.add_argument("--arm", action="append", default=None, metavar="DIR",
                   help="also analyse this autoregressive baseline (a checkpoint of train --arch arm-...; repeat "
                        "for several): its picks in its own order, and its errors on the subproblems its order "
                        "presents, teacher forced")
    p.add_argument("--rates", type=rate_list, default=DEFAULT_RATES,
                   help="masking rates of the one-call table (default: 0.1,0.2,...,1)")
    p.add_argument("--seed", type=count, default=0, help="seed of the masks and the random order")
    p.add_argument("--batch-size", type=positive_int, default=256, help="puzzles per model call")
    p.add_argument("--device", type=common.device, default="cpu", help="cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads and the engine's threads (default: torch's choice; the engine: all cores)")
    common.precision_arg(p, "fp32")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="folder of the report; created if missing")
    p.add_argument("--name", type=report_name, default=DEFAULT_NAME, help="file name stem of the report")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG figure (no matplotlib needed)")
    p.add_argument("--cache-dir", default=None, help="where generated test sets are cached (default: not cached)")
