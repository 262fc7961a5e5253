"""Command-line options of a training run, shared by every task's `train` command (`fastmdm sudoku train`,
`fastmdm nae train`).

Every option's default is its config dataclass's: the parser leaves unset options at None, and only the
options given on the command line reach the config (so a recipe's stages keep their own values).
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path

from fastmdm.cli import CommandError, UsageError, count, device, number_at_least, positive_int

#: `fastmdm.training.LoopConfig` fields with a flag of the same name (besides --resume)
LOOP_FIELDS = ("steps", "minutes", "stop_after", "out", "init_from", "batch_size", "lr", "warmup_steps",
               "weight_decay", "grad_clip", "seed", "eval_every", "eval_n", "save_every", "threads", "compile")


def defaults_of(cls) -> dict:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def option(p, defaults: dict, name: str, help: str, default_text: str | None = None, **kwargs) -> None:
    """`--name` for config field `name`, its help ending in the config's default."""
    d = defaults.get(name)
    shown = default_text if default_text is not None else (None if d is None else d)
    text = help if shown is None or kwargs.get("action") == "store_true" else f"{help} (default: {shown})"
    p.add_argument(flag(name), dest=name, default=None, help=text, **kwargs)


def loop_options(p, defaults: dict, *, what: str = "examples", out_text: str | None = None,
                 make_command: str = "train") -> None:
    """The options of every training run: schedule, checkpoints, optimizer, evaluation, threads."""
    option(p, defaults, "steps", "schedule length in optimizer steps", type=positive_int)
    option(p, defaults, "minutes", "wall-clock budget; without --steps the schedule is sized to fit it",
           type=number_at_least(0.0, strict=True))
    option(p, defaults, "stop_after", "stop this run at that step (resume later)", type=positive_int)
    option(p, defaults, "out", "checkpoint directory", default_text=out_text)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    option(p, defaults, "init_from", "start from this checkpoint's weights with a fresh optimizer and schedule "
           f"(warm restart; a directory `{make_command} --out DIR` wrote)", metavar="DIR")
    option(p, defaults, "batch_size", f"{what} per step and process", type=positive_int)
    option(p, defaults, "lr", "peak learning rate", type=number_at_least(0.0, strict=True))
    option(p, defaults, "warmup_steps", "linear warmup steps", type=count)
    option(p, defaults, "weight_decay", "AdamW weight decay", type=number_at_least(0.0))
    option(p, defaults, "grad_clip", "gradient norm clip", type=number_at_least(0.0))
    option(p, defaults, "seed", "seed of the initialisation, batches and masks", type=count)
    option(p, defaults, "eval_every", "steps between held-out evaluations (0: never)", type=count)
    option(p, defaults, "eval_n", f"{what} per held-out evaluation", type=count)
    option(p, defaults, "save_every", "steps between checkpoints (0: write none)", type=count)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (GPU)")


def given_fields(args, names) -> dict:
    """The config fields among `names` that the command line sets (the options given)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def run_train(args, cls, names, train, command: str) -> int:
    """A task's `train` command: the config of the options given (`eval_strategies` joined back into its
    comma-separated field), checked paths, then `train(cfg, resume=args.resume)`."""
    kw = given_fields(args, names)
    if "eval_strategies" in kw:
        kw["eval_strategies"] = ",".join(kw["eval_strategies"])
    cfg = make_config(cls, kw)
    check_paths(cfg, args.resume, command)
    train(cfg, resume=args.resume)
    return 0


def flags_for(message: str, defaults: dict) -> str:
    """'steps, minutes: ...' -> '--steps, --minutes: ...' (the configs name their fields)."""
    head, sep, rest = message.partition(":")
    names = [n.strip() for n in head.split(",")]
    if sep and all(n in defaults for n in names):
        return ", ".join(flag(n) for n in names) + sep + rest
    return message


def make_config(cls, kwargs: dict):
    """`cls(**kwargs)`, a refusal worded with the flags."""
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise UsageError(flags_for(str(e), defaults_of(cls))) from None


def check_paths(cfg, resume: bool, make_command: str) -> None:
    """--out must be a directory (or new); --init-from an existing checkpoint directory."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; pass a directory for the checkpoint")
    if cfg.init_from is not None and not resume and not Path(cfg.init_from).is_dir():
        raise CommandError(f"--init-from {cfg.init_from}: no such checkpoint directory; pass a directory that "
                           f"`{make_command} --out DIR` wrote")


# ---------------------------------------------------------------- the model commands of a task (eval, solve)
def load_checkpoint(args, load):
    """`load(args.checkpoint)` onto `args.device`, a missing or damaged checkpoint a CommandError that names
    --checkpoint."""
    from fastmdm.checkpoint import CheckpointError  # noqa: PLC0415
    try:
        return load(args.checkpoint, device=args.device)
    except (FileNotFoundError, NotADirectoryError, CheckpointError) as e:
        text = str(e)
        if args.checkpoint is not None:
            text = "--" + text if text.startswith("checkpoint ") else f"--checkpoint {args.checkpoint}: {text}"
        raise CommandError(text) from e


def apply_threads(args) -> None:
    if args.threads:
        import torch  # noqa: PLC0415
        torch.set_num_threads(args.threads)


def check_schedule(args) -> None:
    if args.k is not None and args.threshold is not None:
        raise UsageError("--k and --threshold are two schedules: pass one of them")


def decoding_options(p, *, temperature: float, make_command: str, shipped: bool = False) -> None:
    """--k / --threshold, --temperature, --seed, --batch-size, --device, --threads and --checkpoint."""
    p.add_argument("--k", type=positive_int, default=None, help="positions filled per model call (default 1)")
    p.add_argument("--threshold", type=number_at_least(0.0), default=None,
                   help="fill every position scoring at least this per call, at least one (instead of --k)")
    p.add_argument("--temperature", type=number_at_least(0.0), default=temperature,
                   help="sampling temperature of each token (0: the most likely)")
    p.add_argument("--seed", type=count, default=0, help="seed of the sampling and the random order")
    p.add_argument("--batch-size", type=positive_int, default=256, help="sequences per model call")
    p.add_argument("--device", type=device, default="cpu", help="where the model runs: cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--checkpoint", required=not shipped, default=None, metavar="DIR",
                   help=f"a directory `{make_command} --out DIR` wrote" + (" (default: the shipped model)" if shipped
                                                                          else ""))
