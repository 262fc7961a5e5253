"""`fastmdm sudoku train | eval | solve` and `fastmdm demo`."""
from __future__ import annotations

import argparse

from fastmdm.models import PRESETS
from fastmdm.sudoku.model import PRECISIONS


def _precision_arg(p, default):
    p.add_argument("--precision", default=default, choices=PRECISIONS,
                   help="fp32; bf16 (the model body under bf16 autocast, head and scores in float32); auto: bf16 "
                        "where it is faster (CPUs with AMX, CUDA GPUs), else fp32")


def _train(args) -> int:
    from fastmdm.sudoku.train import config_from_args, train  # noqa: PLC0415
    cfg = config_from_args(args)
    train(cfg, resume=args.resume)
    return 0


def _eval(args) -> int:
    from fastmdm.sudoku.evaluate import run_cli  # noqa: PLC0415
    return run_cli(args)


def _solve(args) -> int:
    from fastmdm.sudoku.solve import run_cli  # noqa: PLC0415
    return run_cli(args)


def _demo(args) -> int:
    from fastmdm.sudoku.demo import run_cli  # noqa: PLC0415
    return run_cli(args)


def _decoding_args(p, default_steps=None):
    p.add_argument("--k", type=int, default=None, help="cells filled per model call (default 1)")
    p.add_argument("--steps", type=int, default=default_steps,
                   help="split the blanks over this many model calls instead of --k (the paper used 50)")
    p.add_argument("--score-noise", type=float, default=0.0,
                   help="scale of Gumbel noise added to ranking scores (the paper used 0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    _precision_arg(p, "fp32")


def register(sudoku_sub, top_sub) -> None:
    p = sudoku_sub.add_parser("train", help="train the Sudoku MDM (under torchrun: DDP)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, default=None, help="schedule length in optimizer steps")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget; without --steps the schedule is sized to fit it")
    p.add_argument("--stop-after", type=int, default=None, help="stop this run at that step (resume later)")
    p.add_argument("--out", default="runs/sudoku", help="checkpoint directory")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--init-from", default=None, metavar="DIR",
                   help="start from this checkpoint's weights with a fresh optimizer and schedule (warm restart)")
    p.add_argument("--batch-size", type=int, default=128, help="per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="standard", choices=["standard", "hard"], help="training puzzles")
    p.add_argument("--n-train", type=int, default=100_000, help="training puzzles to generate (cached)")
    p.add_argument("--data-seed", type=int, default=17)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--eval-strategies", default="margin")
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--attention-backend", default=None, choices=["auto", "torch", "triton"],
                   help="fastmdm.ops.attention backend of the model (auto: the Triton kernel on CUDA)")
    p.add_argument("--cache-dir", default=None, help="where generated data is cached (default OUT/data)")
    p.set_defaults(func=_train)

    p = sudoku_sub.add_parser("eval", help="puzzle accuracy per decoding strategy",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped model)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--split", default=None, help="standard, hard, or both as 'standard,hard' (default)")
    g.add_argument("--file", default=None, help="puzzles file: '<puzzle> <solution>' or puzzles alone per line")
    p.add_argument("--strategies", default="random,confidence,margin,entropy")
    p.add_argument("--n", "--num-puzzles", dest="n", type=int, default=1000,
                   help="puzzles per split (under torchrun spell it --num-puzzles: torchrun claims --n)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this path")
    p.add_argument("--plot", default=None, help="write a PNG chart of puzzle accuracy to this path (per strategy; "
                                                "with --sweep-k, against k)")
    p.add_argument("--sweep-k", default=None, help="evaluate each of these cells-per-call values, e.g. 1,2,4,8")
    p.add_argument("--cache-dir", default=None, help="where generated test sets are cached")
    _decoding_args(p)
    p.set_defaults(func=_eval)

    p = sudoku_sub.add_parser("solve", help="solve puzzles with the model (one 81-digit answer per line)")
    p.add_argument("puzzles", nargs="*", help="81-character puzzles ('.' or '0' for a blank)")
    p.add_argument("--file", default=None, help="read puzzles from a file ('-' for stdin)")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped model)")
    p.add_argument("--strategy", default="margin")
    p.add_argument("--json", action="store_true", help="one JSON object per puzzle with validity")
    _decoding_args(p)
    p.set_defaults(func=_solve)

    p = top_sub.add_parser("demo", help="the shipped Sudoku MDM: accuracy per strategy and one puzzle solved "
                                        "step by step")
    p.add_argument("--n", type=int, default=None,
                   help="test puzzles per strategy (default 200 in bf16, 128 in fp32: under two minutes on 2 cores)")
    p.add_argument("--hard", action="store_true", help="also run the hard split (about twice the time)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-animation", action="store_true", help="print the fill order without pauses")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    _precision_arg(p, "auto")
    p.set_defaults(func=_demo)
