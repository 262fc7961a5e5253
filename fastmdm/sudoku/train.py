"""Train the Sudoku MDM: `fastmdm sudoku train` (one process) or under `torchrun` (DDP: gloo on CPU, nccl on CUDA).

Each step: draw a batch of training puzzles (a fixed pool from the puzzle engine), augment it with random
Sudoku symmetries, draw a masking rate t per puzzle (stratified over the batch), mask each blank cell of
the puzzle with probability t (clues always stay visible), and minimise the masked-diffusion ELBO
(`fastmdm.mdm_loss_from_hidden`, normalised by the number of blank cells).

`arch="arm-rowmajor"` or `"arm-solver"` trains an autoregressive baseline of the same body instead
(`fastmdm.sudoku.arm`): causal attention, teacher forcing on the blanks written in that order.

The loop itself (optimizer, schedule, exact resume, warm restarts, checkpoints, DDP) is `fastmdm.training`'s,
shared with the other tasks; this module is the Sudoku `TrainingTask` and its config.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastmdm import training
from fastmdm.sudoku import data as sdata
from fastmdm.sudoku.arm import ARCHS, ARMObjective, fill_orders, sequences
from fastmdm.sudoku.grids import apply_symmetries, augment, random_symmetries
from fastmdm.sudoku.model import PRESETS, sudoku_model
from fastmdm.training import MDMObjective


@dataclass
class TrainConfig(training.LoopConfig):
    """One Sudoku training run (the loop's fields are `fastmdm.training.LoopConfig`'s). The `fastmdm sudoku
    train` options take their defaults from here."""
    preset: str = "cpu"
    arch: str = "mdm"                   # "mdm", or an autoregressive baseline: "arm-rowmajor", "arm-solver"
    model_overrides: dict = field(default_factory=dict)
    split: str = "standard"
    n_train: int = 100_000
    data_seed: int = 17
    data: str = "engine"                # "engine" or "synthetic" (tests only)
    eval_strategies: str = "margin"
    arm_cell_weight: float = 1.0        # ARMs: weight of the cell tokens in the loss (digits: 1)
    arm_digits_first: int = 0           # ARMs: steps at the start that train on the digit tokens alone
    out: str = "runs/sudoku"
    cache_dir: str | None = None

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; use one of {sorted(PRESETS)}")
        super().__post_init__()
        if isinstance(self.n_train, bool) or not isinstance(self.n_train, int) or self.n_train < 1:
            raise ValueError(f"n_train: must be an integer >= 1, got {self.n_train!r}")
        if isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int) or self.data_seed < 0:
            raise ValueError(f"data_seed: must be an integer >= 0, got {self.data_seed!r}")
        if not (isinstance(self.arm_cell_weight, (int, float)) and math.isfinite(self.arm_cell_weight)
                and self.arm_cell_weight >= 0) or isinstance(self.arm_cell_weight, bool):
            raise ValueError(f"arm_cell_weight: must be a number >= 0, got {self.arm_cell_weight!r}")
        if isinstance(self.arm_digits_first, bool) or not isinstance(self.arm_digits_first, int) \
                or self.arm_digits_first < 0:
            raise ValueError(f"arm_digits_first: must be an integer >= 0, got {self.arm_digits_first!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch: must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.data not in ("engine", "synthetic"):
            raise ValueError(f"data: must be 'engine' or 'synthetic', got {self.data!r}")
        if self.split not in sdata.TEST_SEEDS:
            raise ValueError(f"split: must be one of {sorted(sdata.TEST_SEEDS)}, got {self.split!r}")


def make_batch(pool_p: torch.Tensor, pool_s: torch.Tensor, batch_size: int, g: torch.Generator):
    """(inputs, targets, masked, p_mask, fillable) for one step, all drawn from generator `g`."""
    idx = torch.randint(pool_p.shape[0], (batch_size,), generator=g)
    p, s = augment(pool_p[idx], pool_s[idx], generator=g)
    p, s = p.long(), s.long()
    return training.masked_batch(s, p == sdata.MASK_ID, sdata.MASK_ID, g)


def make_arm_batch(pool_p: torch.Tensor, pool_s: torch.Tensor, pool_r: torch.Tensor, batch_size: int,
                   g: torch.Generator):
    """(token sequences,) for one ARM step: puzzles, solutions and fill ranks under one random symmetry each
    (the ranks move with their cells, so a solver order stays a solver order of the moved puzzle)."""
    idx = torch.randint(pool_p.shape[0], (batch_size,), generator=g)
    cells, digits = random_symmetries(batch_size, g)
    p = apply_symmetries(pool_p[idx], cells, digits)
    s = apply_symmetries(pool_s[idx], cells, digits)
    r = apply_symmetries(pool_r[idx], cells)
    return (sequences(p, s, r),)


def load_data(cfg: TrainConfig, log=print):
    """(train pool, held-out eval set) as numpy dicts."""
    if cfg.data == "synthetic":
        train = sdata.synthetic_puzzles(cfg.n_train, seed=cfg.data_seed)
        held = sdata.synthetic_puzzles(max(cfg.eval_n, 1), seed=cfg.data_seed + 1)
        return train, held
    cache = cfg.cache_dir or str(Path(cfg.out) / "data")
    held = sdata.test_set(cfg.split, max(cfg.eval_n, 1), cache)
    t0 = time.perf_counter()
    train = sdata.cached_generate(cfg.n_train, cfg.split, cfg.data_seed, cache, progress=True)
    before = train["puzzles"].shape[0]
    train = sdata.remove_overlap(train, [held, sdata.test_set("hard", 1000, cache)])
    log(f"data: {train['puzzles'].shape[0]} training puzzles ({cfg.split}, seed {cfg.data_seed}; "
        f"{before - train['puzzles'].shape[0]} dropped as overlapping test sets) in {time.perf_counter() - t0:.1f}s")
    return train, held



class SudokuTask:
    """The Sudoku `fastmdm.training.TrainingTask`: the MDM or an ARM baseline on the engine's puzzles."""

    def __init__(self, pool=None):
        self.pool = pool   # optional (train, held) numpy dicts; generated (and cached) when None

    def build_model(self, cfg: TrainConfig):
        return sudoku_model(cfg.preset, arch=cfg.arch, **cfg.model_overrides)

    def describe(self, cfg: TrainConfig) -> str:
        return f"{cfg.arch}, preset {cfg.preset}"

    def prepare(self, cfg: TrainConfig, log) -> None:
        train_data, self.held = self.pool if self.pool is not None else load_data(cfg, log)
        self.pool_p = torch.as_tensor(train_data["puzzles"]).long()
        self.pool_s = torch.as_tensor(train_data["solutions"]).long()
        self.pool_r = None
        if cfg.arch != "mdm":
            t0 = time.perf_counter()
            self.pool_r = torch.as_tensor(fill_orders(train_data["puzzles"], train_data["solutions"],
                                                      cfg.arch.removeprefix("arm-"))).long()
            log(f"data: {cfg.arch} fill orders of {self.pool_r.shape[0]} puzzles in {time.perf_counter() - t0:.1f}s")

    def objective(self, model):
        return MDMObjective(model) if self.pool_r is None else ARMObjective(model)

    def batch(self, cfg: TrainConfig, g: torch.Generator, step: int) -> tuple:
        if self.pool_r is None:
            return make_batch(self.pool_p, self.pool_s, cfg.batch_size, g)
        (seqs,) = make_arm_batch(self.pool_p, self.pool_s, self.pool_r, cfg.batch_size, g)
        return seqs, torch.tensor(0.0 if step < cfg.arm_digits_first else float(cfg.arm_cell_weight))

    def evaluate(self, model, cfg: TrainConfig) -> tuple[list, str]:
        from fastmdm.sudoku.evaluate import evaluate  # noqa: PLC0415
        n = min(cfg.eval_n, self.held["puzzles"].shape[0])
        rows = evaluate(model, self.held["puzzles"][:n], self.held["solutions"][:n],
                        strategies=cfg.eval_strategies, k=1, batch_size=256, seed=0)
        msg = ", ".join(f"{r['strategy']} {100 * r['puzzle_acc']:.1f}% (cells {100 * r['cell_acc']:.1f}%)"
                        for r in rows)
        return rows, f"held-out {cfg.split} n={n}: {msg}"


def train(cfg: TrainConfig, *, resume: bool = False, pool=None, log=None) -> dict:
    """Run training; returns {"model", "optimizer", "step", "history", "out"}. `pool`: optional (train, held)
    numpy dicts."""
    return training.run(cfg, SudokuTask(pool), resume=resume, log=log)
