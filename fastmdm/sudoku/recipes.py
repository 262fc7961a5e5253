"""Training recipes: the runs behind a model, stage by stage, as `TrainConfig` fields.

`shipped` is the lineage of the shipped checkpoint (checkpoints/MODEL_CARD.md): run 1, stopped at step
2,250 and resumed with two threads; run 2, a warm restart from run 1's weights; run 3, a warm restart from
run 2's. Each stage lists only what differs from `TrainConfig`'s defaults. Paths are relative to a base
directory (`out` and `cache_dir` under it; `init_from` names an earlier stage's `out`).

`arm-solver` and `arm-rowmajor` are the autoregressive baselines' runs behind the shipped checkpoints/arm-solver
(the last stage) and checkpoints/arm-rowmajor (checkpoints/ARM_CARD.md; results: benchmarks/results/
sudoku_compare_arm.md).

`paper-gpu` is the one-GPU run of the `paper` preset that gpu_recipe.sh starts.

`fastmdm sudoku train --recipe NAME --out BASE` lists the stages and runs them in order; `BASE/recipe.json`
records the finished ones, so running the command again skips those and resumes the one that was cut short.
The stages' time budgets make a rerun's step counts follow the machine's speed, not the original's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastmdm.sudoku.train import TrainConfig


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    config: dict = field(default_factory=dict)   # TrainConfig fields; out/cache_dir/init_from relative to BASE
    resume: bool = False                          # continue the checkpoint in `out` (same run, later piece)

    def train_config(self, base=".", **overrides) -> TrainConfig:
        """This stage's TrainConfig with paths under `base`; `overrides` (e.g. threads) win over the stage."""
        kw = dict(self.config)
        for key in ("out", "cache_dir", "init_from"):
            if kw.get(key) is not None:
                kw[key] = str(Path(base) / kw[key])
        return TrainConfig(**{**kw, **overrides})


_SHIPPED_COMMON = dict(preset="cpu", batch_size=64, warmup_steps=200, n_train=100_000, eval_n=200, save_every=250)

RECIPES: dict[str, tuple[Stage, ...]] = {
    "shipped": (
        Stage("run1a", "run 1 on one thread, stopped at step 2,250",
              {**_SHIPPED_COMMON, "minutes": 85.0, "lr": 1e-3, "eval_every": 1000, "threads": 1,
               "stop_after": 2250, "out": "sudoku-cpu"}),
        Stage("run1b", "run 1 resumed on two threads",
              {**_SHIPPED_COMMON, "minutes": 33.0, "lr": 1e-3, "eval_every": 1000, "threads": 2,
               "out": "sudoku-cpu"}, resume=True),
        Stage("run2", "warm restart from run 1 at peak rate 8e-4",
              {**_SHIPPED_COMMON, "minutes": 113.0, "lr": 8e-4, "seed": 1, "eval_every": 2000, "threads": 2,
               "cache_dir": "sudoku-cpu/data", "init_from": "sudoku-cpu", "out": "sudoku-cpu2"}),
        Stage("run3", "warm restart from run 2 at peak rate 5e-4 (the shipped checkpoint)",
              {**_SHIPPED_COMMON, "minutes": 112.0, "lr": 5e-4, "seed": 2, "eval_every": 2000, "threads": 2,
               "init_from": "sudoku-cpu2", "out": "sudoku-cpu3"}),
    ),
    # the autoregressive baselines (benchmarks/results/sudoku_compare.md): the same body, one thread each.
    # A loss over cells and digits from step 0 held the digits at chance (ln 9) for 1,000 steps in session 6;
    # the digits alone leave that plateau after about 250 steps, so the solver-order ARM trains on digits
    # first, and the row-major one (whose cells are given at decoding) on digits only.
    "arm-solver": (
        Stage("arm-solver", "ARM, solver order, on one thread: digits alone for 400 steps, then cells too",
              {**_SHIPPED_COMMON, "arch": "arm-solver", "minutes": 115.0, "lr": 1e-3, "eval_every": 1000,
               "eval_n": 100, "threads": 1, "arm_digits_first": 400, "cache_dir": "data", "out": "arm-solver"}),
        Stage("arm-solver2", "warm restart from the first run at peak rate 5e-4, cells and digits from the start "
              "(the shipped checkpoints/arm-solver)",
              {**_SHIPPED_COMMON, "arch": "arm-solver", "minutes": 120.0, "lr": 5e-4, "seed": 1, "eval_every": 1000,
               "eval_n": 100, "threads": 1, "arm_digits_first": 0, "cache_dir": "data", "init_from": "arm-solver",
               "out": "arm-solver2"}),
    ),
    "arm-rowmajor": (
        Stage("arm-rowmajor", "ARM, row-major order, on one thread, digit tokens only",
              {**_SHIPPED_COMMON, "arch": "arm-rowmajor", "minutes": 118.0, "lr": 1e-3, "eval_every": 1000,
               "eval_n": 100, "threads": 1, "arm_cell_weight": 0.0, "cache_dir": "data", "out": "arm-rowmajor"}),
    ),
    "paper-gpu": (
        Stage("paper", "the paper preset on one GPU (bf16 autocast, fused AdamW)",
              {"preset": "paper", "minutes": 7.0, "batch_size": 1024, "lr": 2e-3, "warmup_steps": 300,
               "n_train": 500_000, "eval_every": 2000, "eval_n": 500, "save_every": 2000, "out": "."}),
    ),
}


def get_recipe(name: str) -> tuple[Stage, ...]:
    if name not in RECIPES:
        raise ValueError(f"recipe: unknown {name!r}; use one of {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def describe(name: str, base=".") -> str:
    """One line per stage: its name, what it does, and where it writes."""
    lines = []
    for i, st in enumerate(get_recipe(name), start=1):
        cfg = st.train_config(base)
        src = f", from {cfg.init_from}" if cfg.init_from else ""
        budget = f"{cfg.minutes:g} min" if cfg.minutes is not None else f"{cfg.steps} steps"
        lines.append(f"{i}. {st.name}: {st.what} ({budget}, lr {cfg.lr:g}{src}; "
                     f"{'resumes ' if st.resume else 'writes '}{cfg.out})")
    return "\n".join(lines)


STATE_FILE = "recipe.json"


def run_recipe(name: str, base, *, overrides: dict | None = None, log=print, train_fn=None) -> list[str]:
    """Run the stages of recipe `name` under `base` in order; returns the names of the stages run now.

    Stages listed as finished in `base/recipe.json` are skipped; a stage whose `out` already holds a training
    checkpoint resumes it. `overrides`: TrainConfig fields for every stage (threads, cache_dir, ...).
    `train_fn(cfg, resume=...)` defaults to `fastmdm.sudoku.train.train`."""
    from fastmdm import checkpoint as ckpt  # noqa: PLC0415
    if train_fn is None:
        from fastmdm.sudoku.train import train as train_fn  # noqa: PLC0415
    stages = get_recipe(name)
    base = Path(base)
    state = {"recipe": name, "finished": []}
    if (base / STATE_FILE).is_file():
        state = ckpt.read_json(base, STATE_FILE)
        if state.get("recipe") != name or not isinstance(state.get("finished"), list):
            raise ValueError(f"recipe: {base / STATE_FILE} belongs to recipe {state.get('recipe')!r}, not {name!r}; "
                             "pick another output directory")
    configs = [st.train_config(base, **(overrides or {})) for st in stages]  # every stage checked up front
    ran = []
    for i, (st, cfg) in enumerate(zip(stages, configs), start=1):
        if st.name in state["finished"]:
            log(f"recipe {name}: stage {i}/{len(stages)} {st.name} finished earlier; skipped")
            continue
        resume = st.resume or (Path(cfg.out) / ckpt.TRAINER_META).is_file()
        log(f"recipe {name}: stage {i}/{len(stages)} {st.name}: {st.what}" + (" (resuming)" if resume else ""))
        train_fn(cfg, resume=resume)
        state["finished"].append(st.name)
        ckpt.atomic_write_json(base / STATE_FILE, state)
        ran.append(st.name)
    return ran
