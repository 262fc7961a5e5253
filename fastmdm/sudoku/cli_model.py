"""`fastmdm sudoku eval | solve` and `fastmdm demo`: the commands that run a Sudoku model."""
from __future__ import annotations

import argparse
import json
import os
import sys

from fastmdm.cli import (
    CommandError,
    UsageError,
    add_command,
    check_writable,
    count,
    environment,
    positive_int,
    strategy,
    strategy_list,
)
from fastmdm.sudoku import cli_common as common
from fastmdm.sudoku.evaluate import DEFAULT_STRATEGIES, schedule_label

#: puzzles per test split when `eval --n` is not given
EVAL_N = 1000


def puzzle_set_args(p) -> None:
    """--split | --file: the test splits, or a file of puzzles (with or without solutions)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--split", type=split_list, default=None,
                   help="standard, hard, or both as 'standard,hard' (default: both)")
    g.add_argument("--file", default=None,
                   help="puzzles file: '<puzzle> <solution>' per line, or puzzles alone (the engine solves them)")


def split_list(text: str) -> list[str]:
    from fastmdm.sudoku.data import TEST_SEEDS  # noqa: PLC0415
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in TEST_SEEDS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected standard, hard or 'standard,hard', got {text!r}")
    return names


def load_eval_sets(args) -> dict:
    """{name: {"puzzles", "solutions"}} from --file or the project's test splits. A file of bare puzzles gets
    its solutions from the engine (each puzzle must have exactly one)."""
    from fastmdm.sudoku import data as sdata  # noqa: PLC0415
    if args.file:
        ds, labels = common.read_puzzle_sources([], args.file)
        n = len(ds["puzzles"]) if args.n is None else min(args.n, len(ds["puzzles"]))
        if n == 0:
            raise CommandError(f"--file {args.file}: no puzzles in it (one 81-character puzzle per line)")
        puzzles = ds["puzzles"][:n]
        solutions = ds["solutions"][:n] if "solutions" in ds else common.refuse_bad_puzzles(puzzles, labels[:n])
        return {str(args.file): {"puzzles": puzzles, "solutions": solutions}}
    n = EVAL_N if args.n is None else args.n
    return {s: sdata.test_set(s, n, args.cache_dir) for s in (args.split or ["standard", "hard"])}


def eval_schedules(args) -> list[dict]:
    """The decoding schedules `eval` runs, in order: {"k": K}, {"steps": S} or {"threshold": T} each."""
    if args.steps is not None:
        return [{"steps": args.steps}]
    if args.threshold is not None:
        return [{"threshold": args.threshold}]
    out = [{"k": k} for k in args.sweep_k or []] + [{"threshold": t} for t in args.sweep_threshold or []]
    return out or [{"k": args.k or 1}]


def check_eval_schedule(args) -> None:
    """--sweep-threshold goes with --sweep-k or alone; thresholds every requested strategy can reach."""
    if args.sweep_threshold:
        for option, value in (("--k", args.k), ("--steps", args.steps), ("--threshold", args.threshold)):
            if value is not None:
                raise UsageError(f"argument --sweep-threshold: not allowed with argument {option}; to compare "
                                 "schedules pass --sweep-k K,K,... beside --sweep-threshold")
    common.check_thresholds("--threshold", [] if args.threshold is None else [args.threshold], args.strategies)
    common.check_thresholds("--sweep-threshold", args.sweep_threshold or [], args.strategies)


def _with_schedule(schedule: dict, row: dict) -> dict:
    return {"schedule": schedule_label(schedule), **schedule, **row}


def cmd_eval(args) -> int:
    import torch.distributed as dist  # noqa: PLC0415

    from fastmdm.checkpoint import atomic_write_json  # noqa: PLC0415
    from fastmdm.sudoku import model as smodel  # noqa: PLC0415
    from fastmdm.sudoku.evaluate import (  # noqa: PLC0415
        describe_fewest,
        evaluate,
        fewest_calls,
        format_sweep,
        format_table,
        model_calls,
        plot,
        plot_calls,
        plot_sweep,
    )
    check_eval_schedule(args)
    common.apply_threads(args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = args.device
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    check_writable("--json", args.json)
    check_writable("--plot", args.plot)
    precision = smodel.resolve_precision(args.precision, device)
    model, _ = common.load_model(args, device, precision)
    sets = load_eval_sets(args)
    schedules = eval_schedules(args)
    if rank == 0:
        calls = sum(model_calls(d["puzzles"][rank::world], **sch, batch_size=args.batch_size)
                    for sch in schedules for d in sets.values()) * len(args.strategies)
        sizes = ", ".join(f"{name} {len(d['puzzles']):,}" for name, d in sets.items())
        adaptive = any("threshold" in sch for sch in schedules)
        print(f"fastmdm sudoku eval: {sum(len(d['puzzles']) for d in sets.values()):,} puzzles ({sizes}) x "
              f"{len(args.strategies)} strateg{'y' if len(args.strategies) == 1 else 'ies'}" +
              (f" x {len(schedules)} schedules" if len(schedules) > 1 else "") +
              f": {'at most' if adaptive else 'about'} {calls:,} model calls of up to {args.batch_size} puzzles"
              + (" (--n sets the puzzles per split)" if args.n is None and not args.file else ""),
              file=sys.stderr, flush=True)
    sweep = []
    with common.model_failures():
        for sch in schedules:
            results = {name: evaluate(model, d["puzzles"], d["solutions"], strategies=args.strategies, **sch,
                                      score_noise=args.score_noise, batch_size=args.batch_size, seed=args.seed,
                                      progress=rank == 0, rank=rank, world_size=world)
                       for name, d in sets.items()}
            sweep.append((sch, results))
    if rank == 0:
        ck = args.checkpoint or str(smodel.SHIPPED_CHECKPOINT)
        for sch, results in sweep:
            print(f"checkpoint: {ck}; decoding {schedule_label(sch)}, score_noise={args.score_noise}, "
                  f"seed={args.seed}, precision={precision}")
            print(format_table(results))
        is_sweep = bool(args.sweep_k or args.sweep_threshold)
        found = {name: fewest_calls(sweep, name) for name in sets} if is_sweep else {}
        if is_sweep:
            print("\naccuracy [95% Wilson interval], model calls per puzzle:\n" + format_sweep(sweep))
            for name, f in found.items():
                if f is not None:
                    print(describe_fewest(f, name))
        settings = {"checkpoint": ck, "k": args.k, "steps": args.steps, "threshold": args.threshold,
                    "score_noise": args.score_noise, "seed": args.seed, "n": args.n, "world_size": world,
                    "device": device, "precision": precision, **environment(args)}
        try:
            if args.json:
                if not is_sweep:
                    body = {"settings": settings, "results": sweep[0][1]}
                else:
                    body = {"settings": {**settings, "sweep_k": args.sweep_k, "sweep_threshold": args.sweep_threshold}}
                    if args.sweep_k:
                        body["sweep"] = [{"k": sch["k"], "results": r} for sch, r in sweep if "k" in sch]
                    if args.sweep_threshold:
                        body["sweep_threshold"] = [{"threshold": sch["threshold"], "results": r}
                                                   for sch, r in sweep if "threshold" in sch]
                    body["fewest_calls"] = {name: None if f is None else
                                            {what: _with_schedule(*pair) for what, pair in f.items()}
                                            for name, f in found.items()}
                atomic_write_json(args.json, body)
            if args.plot:
                if args.sweep_threshold:
                    plot_calls(sweep, args.plot)
                elif args.sweep_k:
                    plot_sweep([(sch["k"], r) for sch, r in sweep], args.plot)
                else:
                    plot(sweep[0][1], args.plot)
        except OSError as e:
            raise CommandError(f"cannot write {e.filename or 'the output'}: {e.strerror or e}") from None
        except RuntimeError as e:  # matplotlib missing
            raise CommandError(f"--plot: {e}") from None
    if world > 1:
        dist.barrier()
    return 0


def _broken_rule(answer) -> str:
    from fastmdm.sudoku import grids  # noqa: PLC0415
    if (answer == 0).any():
        return f"cell {int((answer == 0).argmax())} is left blank"
    try:
        grids.check_givens(answer)
    except ValueError as e:
        return str(e).removeprefix("contradictory givens: ")
    return "it changes a clue"


def cmd_solve(args) -> int:
    from fastmdm.sudoku.evaluate import answer_puzzles  # noqa: PLC0415
    common.apply_threads(args)
    ds, labels = common.read_puzzle_sources(args.puzzles, args.file)
    puzzles = ds["puzzles"]
    if len(puzzles) == 0:
        raise UsageError("no puzzles: pass 81-character puzzles as arguments or --file FILE ('-' for stdin)")
    common.check_thresholds("--threshold", [] if args.threshold is None else [args.threshold], [args.strategy])
    common.refuse_bad_puzzles(puzzles, labels)
    model, _ = common.load_model(args, args.device, args.precision)
    with common.model_failures():
        answers, valid = answer_puzzles(model, puzzles, strategy=args.strategy, k=args.k, steps=args.steps,
                                        threshold=args.threshold, score_noise=args.score_noise, seed=args.seed,
                                        batch_size=args.batch_size,
                                        progress=len(puzzles) > args.batch_size)
    for p, a, ok, label in zip(puzzles, answers, valid, labels):
        digits = "".join(str(int(v)) for v in a)
        if args.json:
            print(json.dumps({"puzzle": "".join(str(int(v)) if v else "." for v in p), "answer": digits,
                              "valid": bool(ok)}))
        else:
            print(digits)
        if not ok:
            print(f"{args._prog}: {label}: the model's answer breaks a rule: {_broken_rule(a)}", file=sys.stderr)
    bad = int((~valid).sum())
    if bad:
        print(f"{args._prog}: {bad} of {len(valid)} answers are not valid Sudoku solutions "
              "(try another --strategy, or --k 1)", file=sys.stderr)
    return 1 if bad else 0


def cmd_demo(args) -> int:
    from fastmdm.sudoku.demo import run  # noqa: PLC0415
    common.apply_threads(args)
    with common.checkpoint_failures(args), common.model_failures():
        run(n=args.n, checkpoint=args.checkpoint, seed=args.seed, animate=False if args.no_animation else None,
            hard=args.hard, precision=args.precision)
    return 0


def register(sudoku_sub, top_sub) -> None:
    from fastmdm.sudoku.demo import DEFAULT_N  # noqa: PLC0415
    p = add_command(sudoku_sub, "eval", cmd_eval, "puzzle accuracy per decoding strategy")
    common.checkpoint_arg(p)
    puzzle_set_args(p)
    p.add_argument("--strategies", type=strategy_list, default=DEFAULT_STRATEGIES,
                   help="comma-separated decoding strategies (default: random,confidence,margin,entropy)")
    p.add_argument("--n", "--num-puzzles", dest="n", type=positive_int, default=None,
                   help=f"puzzles per split (default: {EVAL_N}; with --file, all of them); under torchrun "
                        "spell it --num-puzzles, as torchrun claims --n")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON to this path")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a PNG chart of puzzle accuracy (per "
                                                               "strategy; with --sweep-k, against k; with "
                                                               "--sweep-threshold, against model calls per puzzle)")
    p.add_argument("--cache-dir", default=None, help="where generated test sets are cached (default: not cached)")
    common.decoding_args(p, sweep=True)

    p = add_command(sudoku_sub, "solve", cmd_solve,
                    "solve puzzles with the model (one 81-digit answer per line)",
                    description="Print the model's answer to each puzzle, in order. Puzzles whose givens clash "
                                "or that have no or several solutions are refused before decoding. An answer "
                                "that breaks a rule is printed, flagged on stderr, and makes the exit code 1.")
    p.add_argument("puzzles", nargs="*", help="81-character puzzles ('.' or '0' for a blank)")
    p.add_argument("--file", default=None, help="read puzzles from a file ('-' for stdin)")
    common.checkpoint_arg(p)
    p.add_argument("--strategy", type=strategy, default="margin", help="decoding strategy")
    p.add_argument("--json", action="store_true", help="one JSON object per puzzle with validity")
    common.decoding_args(p)

    p = add_command(top_sub, "demo", cmd_demo,
                    "the shipped Sudoku MDM: accuracy per strategy and one puzzle solved step by step")
    p.add_argument("--n", type=positive_int, default=None,
                   help=f"test puzzles per strategy (default: {DEFAULT_N['bf16']} in bf16, {DEFAULT_N['fp32']} "
                        "in fp32)")
    p.add_argument("--hard", action="store_true", help="also run the hard split (about twice the time)")
    common.checkpoint_arg(p)
    p.add_argument("--seed", type=count, default=0, help="seed of the puzzles and the random order")
    p.add_argument("--no-animation", action="store_true", help="print the fill order without pauses")
    common.threads_arg(p)
    common.precision_arg(p, "auto")
