"""`fastmdm sudoku train`: one run from options, or a named recipe's stages (`--recipe`).

Every option's default is `TrainConfig`'s (the shared options: `fastmdm.training_cli`): only the options
given on the command line reach the TrainConfig (or, with --recipe, override every stage).
"""
from __future__ import annotations

import sys

from fastmdm import training_cli as tc
from fastmdm.cli import UsageError, add_command, count, number_at_least, positive_int, strategy_list
from fastmdm.sudoku.arm import ARCHS
from fastmdm.sudoku.engine import SPLITS
from fastmdm.sudoku.model import PRESETS
from fastmdm.sudoku.recipes import RECIPES
from fastmdm.sudoku.train import TrainConfig

_DEFAULTS = tc.defaults_of(TrainConfig)
_COMMAND = "fastmdm sudoku train"
#: command-line flag -> TrainConfig field, for the options that map one to one
_FIELDS = (*tc.LOOP_FIELDS, "preset", "arch", "split", "n_train", "data_seed", "eval_strategies", "cache_dir",
           "arm_cell_weight", "arm_digits_first")


def given_fields(args) -> dict:
    """The TrainConfig fields the command line sets (the options given)."""
    kw = tc.given_fields(args, _FIELDS)
    if "eval_strategies" in kw:
        kw["eval_strategies"] = ",".join(kw["eval_strategies"])
    if getattr(args, "attention_backend", None):
        kw["model_overrides"] = {"attention_backend": args.attention_backend}
    return kw


def config_from_args(args) -> TrainConfig:
    """The TrainConfig of a command line: TrainConfig's defaults, replaced by the options given."""
    return tc.make_config(TrainConfig, given_fields(args))


def run(args) -> int:
    from fastmdm.sudoku import recipes  # noqa: PLC0415
    from fastmdm.sudoku.train import train  # noqa: PLC0415
    if args.recipe is None:
        if args.dry_run:
            raise UsageError("--dry-run lists a recipe's stages: pass --recipe NAME too")
        cfg = config_from_args(args)
        tc.check_paths(cfg, args.resume, _COMMAND)
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
        raise UsageError(tc.flags_for(str(e), _DEFAULTS)) from None
    print(f"recipe {args.recipe} ({len(stages)} stages, under {base}):\n{recipes.describe(args.recipe, base)}",
          file=sys.stderr)
    if args.dry_run:
        return 0
    for cfg in stages[:1]:
        tc.check_paths(cfg, False, _COMMAND)
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
    def opt(name, help, **kwargs):
        tc.option(p, _DEFAULTS, name, help, **kwargs)
    opt("preset", "model size", choices=sorted(PRESETS))
    opt("arch", "the masked diffusion model, or an autoregressive baseline of the same body trained by "
        "teacher forcing with the blanks in reading order (arm-rowmajor) or the solver's order (arm-solver)",
        choices=ARCHS)
    tc.loop_options(p, _DEFAULTS, what="puzzles", make_command=_COMMAND,
                    out_text=f"{_DEFAULTS['out']}; with --recipe, the base directory of the stages, runs/RECIPE")
    opt("split", "training puzzles", choices=SPLITS)
    opt("n_train", "training puzzles to generate (cached)", type=positive_int)
    opt("data_seed", "seed of the training puzzles", type=count)
    opt("eval_strategies", "decoding strategies of the held-out evaluation", type=strategy_list)
    opt("arm_cell_weight", "ARMs: weight of the cell tokens in the teacher-forcing loss, the digits' being 1 "
        "(0: digits alone, as arm-rowmajor's cells are given at decoding)", type=number_at_least(0.0))
    opt("arm_digits_first", "ARMs: steps at the start that train on the digit tokens alone (a whole-sequence "
        "loss from step 0 can hold the digits at chance for thousands of steps)", type=count)
    p.add_argument("--attention-backend", default=None, choices=["auto", "torch", "triton"],
                   help="fastmdm.ops.attention backend of the model (default: auto, the Triton kernel on CUDA)")
    opt("cache_dir", "where generated data is cached", default_text="OUT/data")
