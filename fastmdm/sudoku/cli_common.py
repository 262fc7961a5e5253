"""What the Sudoku commands share: decoding and runtime options, loading a checkpoint, reading puzzles,
and turning the failures a user can fix into one-line `CommandError`s."""
from __future__ import annotations

import argparse
import math
import sys
from contextlib import contextmanager

import numpy as np

from fastmdm.cli import CommandError, UsageError, count, device, number_at_least, positive_int
from fastmdm.sudoku.model import PRECISIONS


def precision_arg(p, default: str) -> None:
    p.add_argument("--precision", default=default, choices=PRECISIONS,
                   help="fp32; bf16 (the model body under bf16 autocast, head and scores in float32); auto: bf16 "
                        "where it is faster (CPUs with AMX, CUDA GPUs), else fp32")


def checkpoint_arg(p) -> None:
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="checkpoint directory (config.json + model.safetensors; default: the shipped model)")


def threads_arg(p) -> None:
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")


THRESHOLD_HELP = ("confidence p(digit), margin p1 - p2, random its uniform noise, entropy exp(-H(p)); "
                  "1 = only certain cells")


def decoding_args(p, *, sweep: bool = False) -> None:
    """--k | --steps | --threshold (| --sweep-k; --sweep-threshold), --score-noise, --seed, --batch-size,
    --device, --threads, --precision."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--k", type=positive_int, default=None, help="cells filled per model call (default: 1)")
    g.add_argument("--steps", type=positive_int, default=None,
                   help="split the blanks over this many model calls instead of --k (the paper used 50)")
    g.add_argument("--threshold", type=threshold_value, default=None, metavar="T",
                   help="fill, at each model call, every blank whose score reaches T in (0, 1], and at least the "
                        f"best ({THRESHOLD_HELP})")
    if sweep:
        g.add_argument("--sweep-k", type=k_list, default=None, metavar="K,K,...",
                       help="evaluate each of these cells-per-call values, e.g. 1,2,4,8 (replaces --k and --steps)")
        p.add_argument("--sweep-threshold", type=threshold_list, default=None, metavar="T,T,...",
                       help="evaluate each of these thresholds, e.g. 0.9,0.99,0.999 (as --threshold; with --sweep-k "
                            "both schedules are run and charted against model calls per puzzle)")
    p.add_argument("--score-noise", type=number_at_least(0.0), default=0.0,
                   help="scale of Gumbel noise added to ranking scores (the paper used 0.5)")
    p.add_argument("--seed", type=count, default=0, help="seed of the random order and the score noise")
    p.add_argument("--batch-size", type=positive_int, default=256, help="puzzles per model call")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N or mps")
    threads_arg(p)
    precision_arg(p, "fp32")


def k_list(text: str) -> list[int]:
    try:
        ks = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1 such as 1,2,4,8, got {text!r}")
    return ks


def threshold_value(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] such as 0.99, got {text!r} (the threshold "
                                         f"is on one scale for every strategy: {THRESHOLD_HELP})")
    return v


def threshold_list(text: str) -> list[float]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated thresholds in (0, 1] such as 0.9,0.99,0.999, "
                                         f"got {text!r}")
    return [threshold_value(v) for v in values]


def check_thresholds(option: str, thresholds, strategies) -> None:
    """A UsageError naming `option` for a threshold a requested strategy can never reach."""
    from fastmdm.sudoku.evaluate import check_threshold  # noqa: PLC0415
    for t in thresholds:
        for s in strategies:
            try:
                check_threshold(s, t)
            except ValueError as e:
                raise UsageError(f"{option} {t:g}: {str(e).removeprefix('threshold: ')}") from None


def apply_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch  # noqa: PLC0415
        torch.set_num_threads(args.threads)


@contextmanager
def checkpoint_failures(args):
    """A missing or damaged checkpoint is a CommandError that names --checkpoint."""
    from fastmdm.checkpoint import CheckpointError  # noqa: PLC0415
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, CheckpointError) as e:
        text = str(e)
        if args.checkpoint is not None and text.startswith("checkpoint "):
            text = "--" + text  # the library's message starts with "checkpoint DIR"
        raise CommandError(text) from e


def load_model(args, device_name: str = "cpu", precision: str = "fp32"):
    """(model, config) from --checkpoint (or the shipped model); a damaged or missing one is a CommandError."""
    from fastmdm.sudoku import model as smodel  # noqa: PLC0415
    with checkpoint_failures(args):
        return smodel.load(args.checkpoint, device=device_name, precision=precision)


@contextmanager
def model_failures():
    """A model that gives NaN (weights that overflow) stops decoding with a ValueError; say what to do."""
    try:
        yield
    except ValueError as e:
        if str(e).startswith("model: NaN"):
            raise CommandError(f"the model gave NaN logits ({str(e).removeprefix('model: ').split(';')[0]}); "
                               "its weights are unusable: pass another --checkpoint or retrain it") from e
        raise


def read_puzzle_sources(puzzles: list[str], file: str | None) -> tuple[dict, list[str]]:
    """Puzzles from the command line and/or a file ('-' = stdin): (dataset dict as `grids.read_dataset`
    gives it, with "solutions" only when every puzzle has one; a label per puzzle such as 'p.txt line 3')."""
    from fastmdm.sudoku import grids  # noqa: PLC0415
    rows, labels, sols = [], [], []
    for i, s in enumerate(puzzles, start=1):
        try:
            rows.append(grids.parse_puzzle(s))
        except ValueError as e:
            raise CommandError(f"puzzle argument {i}: {e}") from None
        labels.append(f"puzzle argument {i}")
    name = "stdin" if file == "-" else file
    if file is not None:
        try:
            ds = grids.read_dataset(sys.stdin.read().splitlines() if file == "-" else file)
        except OSError as e:
            raise CommandError(f"--file {file}: cannot read it ({e.strerror or e}); check the path") from None
        except ValueError as e:
            raise CommandError(f"--file {name}: {e}") from None
        rows += list(ds["puzzles"])
        labels += [f"{name} line {n}" for n in ds.get("line", range(1, len(ds["puzzles"]) + 1))]
        sols = list(ds["solutions"]) if "solutions" in ds and not puzzles else []
    out = {"puzzles": np.stack(rows) if rows else np.zeros((0, 81), np.int8)}
    if sols:
        out["solutions"] = np.stack(sols)
    return out, labels


def refuse_bad_puzzles(puzzles: np.ndarray, labels: list[str]) -> np.ndarray:
    """Solutions (int8 [n, 81]) of puzzles that each have exactly one; else a CommandError naming the first bad
    puzzle's line and reason (the checks of `fastmdm sudoku grade`) and how many more are bad."""
    from fastmdm.sudoku import engine  # noqa: PLC0415
    status = engine.check_puzzles(puzzles)
    bad = np.flatnonzero(status != engine.OK)
    if len(bad):
        i = int(bad[0])
        try:
            engine.unique_solution(puzzles[i])
            reason = engine.STATUS_NAMES[status[i]]
        except ValueError as e:
            reason = str(e).removeprefix("puzzle has ")
        more = f" (and {len(bad) - 1} more: {', '.join(labels[j] for j in bad[1:4])}" + \
            (", ..." if len(bad) > 4 else "") + ")" if len(bad) > 1 else ""
        raise CommandError(f"{labels[i]}: {reason}{more}; fix or remove it (`fastmdm sudoku grade FILE` "
                           "checks a whole file)")
    return engine.solve_batch(puzzles)[1]
