"""`fastmdm zebra train` and `fastmdm zebra eval`: Zebra MDMs, trained with the shared loop
(`fastmdm.training`) and decoded in each order with `fastmdm.sample`; `solve --checkpoint` fills puzzles with
a model instead of the native solver."""
from __future__ import annotations

import json

from fastmdm import training_cli as tc
from fastmdm.cli import (
    CommandError,
    add_command,
    check_writable,
    count,
    environment,
    positive_int,
    strategy_list,
    write_text_output,
)
from fastmdm.zebra.model import POSITIONS, PRESETS, load
from fastmdm.zebra.train import ZebraTrainConfig

_DEFAULTS = tc.defaults_of(ZebraTrainConfig)
_COMMAND = "fastmdm zebra train"
_FIELDS = (*tc.LOOP_FIELDS, "preset", "positions", "houses", "attributes", "max_clues", "logic_only", "data_seed",
           "eval_strategies")


def cmd_train(args) -> int:
    from fastmdm.zebra.train import train  # noqa: PLC0415
    return tc.run_train(args, ZebraTrainConfig, _FIELDS, train, _COMMAND)


def cmd_eval(args) -> int:
    from fastmdm.zebra import data  # noqa: PLC0415
    from fastmdm.zebra import evaluate as ev  # noqa: PLC0415
    tc.check_schedule(args)
    for option in ("--json", "--markdown", "--plot"):
        check_writable(option, getattr(args, option[2:]))
    tc.apply_threads(args)
    model, task, cfg = tc.load_checkpoint(args, load)
    test = data.test_set(args.n, task)
    rows = ev.evaluate(model.eval(), task, test.tokens, strategies=args.strategies, k=args.k, threshold=args.threshold,
                       temperature=args.temperature, seed=args.seed, batch_size=args.batch_size, progress=True)
    cells = ev.cell_accuracy(model, task, test, batch_size=args.batch_size)
    text = (f"Zebra ({task.describe()}), {args.n} test puzzles, every cell masked\n\n{ev.format_table(rows, task)}"
            f"\n\nOne model call, by the technique the native solver placed each cell with:\n\n"
            f"{ev.format_cell_accuracy(cells)}")
    print(text)
    if args.markdown:
        write_text_output(args.markdown, text + f"\n\nCommand: `{environment(args)['command']}`\n")
    if args.plot:
        ev.plot(rows, args.plot, title=f"Zebra {task.houses} x {task.attributes}: {args.n} test puzzles, "
                "solved by decoding order")
    if args.json:
        write_text_output(args.json, json.dumps({"task": {"houses": task.houses, "attributes": task.attributes,
                                                          "max_clues": task.max_clues, "logic_only": task.logic_only},
                                                 "checkpoint": str(args.checkpoint), "trained": cfg.get("trained"),
                                                 "rows": rows, "cell_accuracy": cells,
                                                 **environment(args)}, indent=1) + "\n")
    return 0


def model_solve(args, tokens, task, labels) -> int:
    """`fastmdm zebra solve --checkpoint DIR`: the model fills the masked cells; one line per puzzle."""
    import torch  # noqa: PLC0415

    from fastmdm.evaluation import sample_batches  # noqa: PLC0415
    from fastmdm.zebra import engine, files  # noqa: PLC0415
    tc.apply_threads(args)
    model, model_task, _ = tc.load_checkpoint(args, load)
    if model_task != task:
        raise CommandError(f"{args.file}: its task ({task.describe()}) is not the checkpoint's "
                           f"({model_task.describe()})")
    x = torch.as_tensor(tokens).long()
    tr = sample_batches(model.eval(), x, mask_id=engine.MASK_ID, strategy=args.strategy, batch_size=256)
    out = tr.tokens.numpy().astype("int8")
    r = engine.check(out, task)
    for i in range(len(out)):
        grid = out[i, task.cell_positions].reshape(task.houses, task.attributes)
        print(f"{labels[i]}: {'solved' if r.solved[i] else 'not solved'} ({args.strategy}): {files.format_grid(grid)}")
    bad = int((~r.solved).sum())
    if bad:
        raise CommandError(f"{bad} of {len(out)} puzzles not solved by the model (first: "
                           f"{labels[int(r.solved.argmin())]})")
    return 0


def register(sub) -> None:
    t = add_command(sub, "train", cmd_train, "train a Zebra MDM (under torchrun: DDP)",
                    description="Train an MDM on fresh Zebra puzzles from the native generator (never the test "
                    "seed): the clues visible, the cells masked at a random rate, the masked-diffusion ELBO. Same "
                    "loop, checkpoints and resume as `fastmdm sudoku train`. See docs/zebra.md.")

    def opt(name, help, **kwargs):
        tc.option(t, _DEFAULTS, name, help, **kwargs)
    opt("preset", "model size", choices=sorted(PRESETS))
    opt("positions", "position scheme: roles (a clue token's role and slot; a cell's house and attribute, embedded "
        "as the clues' tokens), clues (roles, and every clue token also carries its whole clue) or learned (one "
        "vector per position)", choices=POSITIONS)
    opt("houses", "houses m", type=positive_int)
    opt("attributes", "attributes n", type=positive_int)
    opt("max_clues", "clue slots of the encoding", type=positive_int, default_text="houses * attributes")
    t.add_argument("--logic-only", dest="logic_only", action="store_true", default=None,
                   help="only puzzles that propagation solves without a guess")
    opt("data_seed", "seed of the training puzzles", type=count)
    tc.loop_options(t, _DEFAULTS, what="puzzles", make_command=_COMMAND)
    opt("eval_strategies", "decoding orders of the evaluation during training", type=strategy_list)

    e = add_command(sub, "eval", cmd_eval, "solve test puzzles with a Zebra MDM in each order",
                    description="Mask every cell of the task's test puzzles, decode them with each order, and report "
                    "the puzzles solved (95%% intervals), cells right and model calls.")
    e.add_argument("--n", type=positive_int, default=1000, help="test puzzles")
    e.add_argument("--strategies", type=strategy_list, default=("random", "confidence", "margin", "entropy"),
                   help="decoding orders, comma-separated (default: random,confidence,margin,entropy)")
    tc.decoding_options(e, temperature=0.0, make_command=_COMMAND, shipped=True)
    e.add_argument("--json", default=None, metavar="FILE", help="write the rows and the run's environment")
    e.add_argument("--markdown", default=None, metavar="FILE", help="write the table as markdown")
    e.add_argument("--plot", default=None, metavar="FILE", help="bar chart of puzzles solved per order (PNG)")
