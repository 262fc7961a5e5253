"""`fastmdm sudoku train`: one run from options, or a named recipe's stages (`--recipe`).

Every option's default is `TrainConfig`'s: the parser leaves unset options at None and only the options
given on the command line reach the TrainConfig (or, with --recipe, override every stage).
"""
from __future__ import annotations

import sys
from dataclasses import MISSING, fields
from pathlib import Path

from fastmdm.cli import CommandError, UsageError, add_command, count, number_at_least, positive_int
from fastmdm.sudoku.arm import ARCHS
from fastmdm.sudoku.cli_common import strategy_list, threads_arg
from fastmdm.sudoku.engine import SPLITS
from fastmdm.sudoku.model import PRESETS
from fastmdm.sudoku.recipes import RECIPES
from fastmdm.sudoku.train import TrainConfig

_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
#: command-line flag -> TrainConfig field, for the options that map one to one
_FIELDS = ("preset", "arch", "steps", "minutes", "stop_after", "out", "init_from", "batch_size", "lr", "warmup_steps",
           "weight_decay", "grad_clip", "seed", "split", "n_train", "data_seed", "eval_every", "eval_n",
           "eval_strategies", "save_every", "threads", "compile", "cache_dir")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _opt(p, name: str, help: str, default_text: str | None = None, **kwargs) -> None:
    d = _DEFAULTS.get(name)
    shown = default_text if default_text is not None else (None if d is None else d)
    text = help if shown is None or kwargs.get("action") == "store_true" else f"{help} (default: {shown})"
    p.add_argument(_flag(name), dest=name, default=None, help=text, **kwargs)


def given_fields(args) -> dict:
    """The TrainConfig fields the command line sets (the options given)."""
    kw = {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
    if "eval_strategies" in kw:
        kw["eval_strategies"] = ",".join(kw["eval_strategies"])
    if getattr(args, "attention_backend", None):
        kw["model_overrides"] = {"attention_backend": args.attention_backend}
    return kw


def config_from_args(args) -> TrainConfig:
    """The TrainConfig of a command line: TrainConfig's defaults, replaced by the options given."""
    try:
        return TrainConfig(**given_fields(args))
    except ValueError as e:
        raise UsageError(_flags_for(str(e))) from None


def _flags_for(message: str) -> str:
    """'steps, minutes: ...' -> '--steps, --minutes: ...' (TrainConfig names its fields)."""
    head, sep, rest = message.partition(":")
    names = [n.strip() for n in head.split(",")]
    if sep and all(n in _DEFAULTS for n in names):
        return ", ".join(_flag(n) for n in names) + sep + rest
    return message


def _check_paths(cfg: TrainConfig, resume: bool) -> None:
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; pass a directory for the checkpoint")
    if cfg.init_from is not None and not resume and not Path(cfg.init_from).is_dir():
        raise CommandError(f"--init-from {cfg.init_from}: no such checkpoint directory; pass a directory that "
                           "`fastmdm sudoku train --out DIR` wrote")


def run(args) -> int:
    from fastmdm.sudoku import recipes  # noqa: PLC0415
    from fastmdm.sudoku.train import train  # noqa: PLC0415
    if args.recipe is None:
        if args.dry_run:
            raise UsageError("--dry-run lists a recipe's stages: pass --recipe NAME too")
        cfg = config_from_args(args)
        _check_paths(cfg, args.resume)
        train(cfg, resume=args.resume)
        return 0
    if args.resume or args.init_from:
        raise UsageError("--recipe resumes its stages itself and chains their weights: leave out --resume "
                         "and --init-from")
    base = args.out or f"runs/{args.recipe}"
    overrides = {k: v for k, v in given_fields(args).items() if k != "out"}
    try:
        stages = [st.train_config(base, **overrides) for st in recipes.get_recipe(args.recipe)]
    except ValueError as e:
        raise UsageError(_flags_for(str(e))) from None
    print(f"recipe {args.recipe} ({len(stages)} stages, under {base}):\n{recipes.describe(args.recipe, base)}",
          file=sys.stderr)
    if args.dry_run:
        return 0
    for cfg in stages[:1]:
        _check_paths(cfg, False)
    recipes.run_recipe(args.recipe, base, overrides=overrides, log=lambda m: print(m, file=sys.stderr))
    return 0


def register(sudoku_sub, top_sub=None) -> None:
    p = add_command(sudoku_sub, "train", run, "train the Sudoku MDM (under torchrun: DDP)",
                    description="Train the Sudoku MDM from options, or run a recipe's stages in order "
                                "(--recipe shipped: the runs behind the shipped model).")
    p.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                   help="run this recipe's stages in order under --out (default base runs/RECIPE), resuming a "
                        "stage cut short and skipping finished ones; options given here override every stage")
    p.add_argument("--dry-run", action="store_true", help="with --recipe: list the stages and exit")
    _opt(p, "preset", "model size", choices=sorted(PRESETS))
    _opt(p, "arch", "the masked diffusion model, or an autoregressive baseline of the same body trained by "
         "teacher forcing with the blanks in reading order (arm-rowmajor) or the solver's order (arm-solver)",
         choices=ARCHS)
    _opt(p, "steps", "schedule length in optimizer steps", type=positive_int)
    _opt(p, "minutes", "wall-clock budget; without --steps the schedule is sized to fit it",
         type=number_at_least(0.0, strict=True))
    _opt(p, "stop_after", "stop this run at that step (resume later)", type=positive_int)
    _opt(p, "out", "checkpoint directory", default_text=f"{_DEFAULTS['out']}; with --recipe, the base directory of "
         "the stages, runs/RECIPE")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    _opt(p, "init_from", "start from this checkpoint's weights with a fresh optimizer and schedule (warm restart)",
         metavar="DIR")
    _opt(p, "batch_size", "puzzles per step and process", type=positive_int)
    _opt(p, "lr", "peak learning rate", type=number_at_least(0.0, strict=True))
    _opt(p, "warmup_steps", "linear warmup steps", type=count)
    _opt(p, "weight_decay", "AdamW weight decay", type=number_at_least(0.0))
    _opt(p, "grad_clip", "gradient norm clip", type=number_at_least(0.0))
    _opt(p, "seed", "seed of the initialisation, batches and masks", type=count)
    _opt(p, "split", "training puzzles", choices=SPLITS)
    _opt(p, "n_train", "training puzzles to generate (cached)", type=positive_int)
    _opt(p, "data_seed", "seed of the training puzzles", type=count)
    _opt(p, "eval_every", "steps between held-out evaluations (0: never)", type=count)
    _opt(p, "eval_n", "held-out puzzles per evaluation", type=count)
    _opt(p, "eval_strategies", "decoding strategies of the held-out evaluation", type=strategy_list)
    _opt(p, "save_every", "steps between checkpoints (0: write none)", type=count)
    threads_arg(p)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (GPU)")
    p.add_argument("--attention-backend", default=None, choices=["auto", "torch", "triton"],
                   help="fastmdm.ops.attention backend of the model (default: auto, the Triton kernel on CUDA)")
    _opt(p, "cache_dir", "where generated data is cached", default_text="OUT/data")
