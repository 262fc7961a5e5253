"""`fastmdm nae train`, `fastmdm nae eval` and `fastmdm nae solve`: L&O-NAE-SAT MDMs, trained with the shared
loop (`fastmdm.training`) and decoded with `fastmdm.sample`."""
from __future__ import annotations

import json
import sys

from fastmdm import training_cli as tc
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
    write_text_output,
)
from fastmdm.nae.model import POSITIONS, PRESETS, load
from fastmdm.nae.train import NAETrainConfig

_DEFAULTS = tc.defaults_of(NAETrainConfig)
_COMMAND = "fastmdm nae train"
_FIELDS = (*tc.LOOP_FIELDS, "preset", "positions", "latents", "observations", "arity", "structure_seed", "data_seed",
           "eval_strategies")


def _share(text: str) -> float:
    import argparse  # noqa: PLC0415
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text!r}")
    return v


def cmd_train(args) -> int:
    from fastmdm.nae.train import train  # noqa: PLC0415
    return tc.run_train(args, NAETrainConfig, _FIELDS, train, _COMMAND)


def cmd_eval(args) -> int:
    from fastmdm.nae import evaluate as ev  # noqa: PLC0415
    tc.check_schedule(args)
    for option in ("--json", "--markdown", "--plot"):
        check_writable(option, getattr(args, option[2:]))
    tc.apply_threads(args)
    model, task, cfg = tc.load_checkpoint(args, load)
    model.eval()
    rows = ev.evaluate(model, task, args.n, strategies=args.strategies, k=args.k, threshold=args.threshold,
                       temperature=args.temperature, seed=args.seed, batch_size=args.batch_size, progress=True,
                       given=args.given)
    start = ("from all-masked rows" if args.given == 0 else
             f"from test sequences with {args.given:.0%} of their positions visible")
    text = [f"L&O-NAE-SAT ({task.describe()}), {args.n} sequences decoded per order {start}, "
            f"temperature {args.temperature:g}, " + (f"threshold {args.threshold:g}" if args.threshold is not None
                                                     else f"{args.k or 1} position(s) per call"), "",
            ev.format_table(rows, task)]
    tokens = None
    if args.token_accuracy:
        tokens = ev.token_accuracy(model, task, args.token_accuracy, seed=args.seed, batch_size=args.batch_size)
        text += ["", f"One model call on random masks of {args.token_accuracy} test sequences (argmax):", "",
                 ev.format_token_table(tokens)]
    print("\n".join(text))
    trained = (cfg.get("trained") or {})
    if args.markdown:
        write_text_output(args.markdown, "\n".join(text) + f"\n\nCommand: `{environment(args)['command']}`\n")
    if args.json:
        write_text_output(args.json, json.dumps({"task": {k: getattr(task, k) for k in
                                                          ("latents", "observations", "arity", "structure_seed")},
                                                 "checkpoint": str(args.checkpoint or "shipped"), "trained": trained,
                                                 "rows": rows, "token_accuracy": tokens, **environment(args)},
                                                indent=1) + "\n")
    if args.plot:
        ev.plot(rows, args.plot, title=f"L&O-NAE-SAT (N={task.latents}, P={task.observations}): "
                f"{args.n} generated sequences per order")
    return 0


def cmd_solve(args) -> int:
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from fastmdm.evaluation import sample_batches  # noqa: PLC0415
    from fastmdm.nae import engine, files  # noqa: PLC0415
    from fastmdm.nae.cli import read_sequences  # noqa: PLC0415
    tc.check_schedule(args)
    check_writable("--out", args.out)
    tc.apply_threads(args)
    model, task, _ = tc.load_checkpoint(args, load)
    tokens, file_task, labels = read_sequences(args.file, None)
    if file_task != task:
        raise CommandError(f"{args.file}: its task ({file_task.describe()}) is not the checkpoint's "
                           f"({task.describe()})")
    if len(tokens) == 0:
        raise UsageError(f"{args.file}: no sequences to fill")
    x = torch.from_numpy(tokens.astype(np.int64))
    out = sample_batches(model.eval(), x, mask_id=engine.MASK_ID, seed=args.seed, batch_size=args.batch_size,
                         strategy=args.strategy, k=args.k, threshold=args.threshold,
                         temperature=args.temperature).tokens.numpy().astype(np.int8)
    write_text_output(args.out, files.format_lines(out, task))
    r = engine.check(out, task)
    bad = int((~r.ok).sum())
    print(f"{len(out)} sequences filled ({args.strategy}); {len(out) - bad} consistent, observation tokens "
          f"correct {r.observation_accuracy.mean():.2%}", file=sys.stderr)
    if bad:
        first = labels[int(np.argmin(r.ok))]
        print(f"{args._prog}: {bad} of {len(out)} filled sequences are not consistent (first: {first})",
              file=sys.stderr)
    return 1 if bad else 0


def register(sub) -> None:
    t = add_command(sub, "train", cmd_train, "train an L&O-NAE-SAT MDM (under torchrun: DDP)",
                    description="Train an MDM on fresh L&O-NAE-SAT sequences from the native generator (never the "
                    "test seed), with the masked-diffusion ELBO over every position. Same loop, checkpoints and "
                    "resume as `fastmdm sudoku train`. See docs/nae.md.")

    def opt(name, help, **kwargs):
        tc.option(t, _DEFAULTS, name, help, **kwargs)
    opt("preset", "model size", choices=sorted(PRESETS))
    opt("positions", "position scheme: clauses (an observation's vector is the sum of its clause's latents' "
        "vectors plus its own; docs/nae.md) or learned (one vector per position)", choices=POSITIONS)
    opt("latents", "latent tokens N", type=positive_int)
    opt("observations", "observation tokens P", type=positive_int)
    opt("arity", "latents per clause", type=positive_int)
    opt("structure_seed", "seed of the clauses", type=count)
    opt("data_seed", "seed of the training sequences", type=count)
    tc.loop_options(t, _DEFAULTS, what="sequences", make_command=_COMMAND)
    opt("eval_strategies", "decoding orders of the evaluation during training", type=strategy_list)

    e = add_command(sub, "eval", cmd_eval, "generate with an L&O-NAE-SAT MDM in each order and check it exactly",
                    description="Generate sequences from all-masked with each decoding order and report the "
                    "observation accuracy (the paper's Table 1 metric), consistent sequences and where each order "
                    "puts the latents, with 95%% intervals.")
    e.add_argument("--n", type=positive_int, default=200, help="sequences generated per order")
    e.add_argument("--strategies", type=strategy_list, default=("random", "confidence", "margin", "entropy"),
                   help="decoding orders, comma-separated (default: random,confidence,margin,entropy)")
    tc.decoding_options(e, temperature=1.0, make_command=_COMMAND, shipped=True)
    e.add_argument("--given", type=_share, default=0.0, metavar="P",
                   help="infilling: start from test sequences with each position visible with probability P "
                   "(default 0: unconditional generation from all-masked rows)")
    e.add_argument("--token-accuracy", type=count, default=0, metavar="N",
                   help="also measure one model call on random masks of N test sequences, by token type")
    e.add_argument("--json", default=None, metavar="FILE", help="write the rows and the run's environment")
    e.add_argument("--markdown", default=None, metavar="FILE", help="write the tables as markdown")
    e.add_argument("--plot", default=None, metavar="FILE", help="bar chart of observation accuracy per order (PNG)")

    s = add_command(sub, "solve", cmd_solve, "fill the masked positions ('.') of L&O-NAE-SAT sequences",
                    description="Fill the masks of partial sequences (a file in `fastmdm nae generate`'s text or "
                    "npz format, '.' for a mask) with the model, print them in the text format and check them.")
    s.add_argument("file", help="txt or npz file, - for stdin")
    s.add_argument("--strategy", type=strategy, default="margin", help="decoding order")
    s.add_argument("--out", default=None, help="output file (default: stdout)")
    tc.decoding_options(s, temperature=0.0, make_command=_COMMAND, shipped=True)
