"""Train a Zebra MDM: `fastmdm zebra train` (one process) or under `torchrun` (DDP).

The loop is `fastmdm.training`'s. Data: fresh puzzles from the native generator at every step, never
repeated: step s draws a start index in [0, 2**62) from its own generator and takes `batch_size` consecutive
puzzles of seed `data_seed` from there (the test seed, `fastmdm.zebra.data.TEST_SEED`, is refused). The clues
always stay visible; each row draws a masking rate t (stratified over the batch), each cell is masked with
probability t, and the loss is the masked-diffusion ELBO over the cells.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastmdm import training
from fastmdm.training import MDMObjective
from fastmdm.zebra import engine
from fastmdm.zebra.data import TEST_SEED
from fastmdm.zebra.model import POSITIONS, PRESETS, zebra_model


@dataclass
class ZebraTrainConfig(training.LoopConfig):
    """One Zebra training run (the loop's fields are `fastmdm.training.LoopConfig`'s)."""
    preset: str = "cpu"
    positions: str = "clues"
    houses: int = 5
    attributes: int = 5
    max_clues: int | None = None
    logic_only: bool = False
    data_seed: int = 1
    batch_size: int = 64
    eval_every: int = 1000
    eval_n: int = 200
    eval_strategies: str = "random,margin"
    out: str = "runs/zebra"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; use one of {sorted(PRESETS)}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions: unknown {self.positions!r}; use one of {', '.join(POSITIONS)}")
        super().__post_init__()
        self.max_clues = self.task.max_clues   # validates the task; None becomes houses * attributes
        training.check_data_seed(self.data_seed, TEST_SEED)

    @property
    def task(self) -> engine.Task:
        return engine.Task(self.houses, self.attributes, self.max_clues, self.logic_only)


def make_batch(task: engine.Task, data_seed: int, batch_size: int, g: torch.Generator):
    """(inputs, targets, masked, p_mask, fillable) for one step, every random draw from `g`. The generator runs
    on torch's thread count (`--threads`); its output does not depend on it."""
    start = training.stream_start(g)
    puzzles = engine.generate(batch_size, task, data_seed, threads=torch.get_num_threads(), start=start)
    x0 = torch.from_numpy(puzzles.tokens).long()
    fillable = torch.zeros_like(x0, dtype=torch.bool)
    fillable[:, task.cell_positions] = True
    return training.masked_batch(x0, fillable, engine.MASK_ID, g)


class ZebraTask:
    """The Zebra `fastmdm.training.TrainingTask`."""

    def build_model(self, cfg: ZebraTrainConfig):
        return zebra_model(cfg.task, cfg.preset, cfg.positions)

    def describe(self, cfg: ZebraTrainConfig) -> str:
        return f"Zebra MDM, preset {cfg.preset}, {cfg.positions} positions, {cfg.task.describe()}"

    def prepare(self, cfg: ZebraTrainConfig, log) -> None:
        from fastmdm.zebra.data import test_set  # noqa: PLC0415
        self.task = cfg.task
        self.held = test_set(max(cfg.eval_n, 1), self.task).tokens if cfg.eval_every and cfg.eval_n else None

    def objective(self, model):
        return MDMObjective(model)

    def batch(self, cfg: ZebraTrainConfig, g: torch.Generator, step: int) -> tuple:
        return make_batch(self.task, cfg.data_seed, cfg.batch_size, g)

    def evaluate(self, model, cfg: ZebraTrainConfig) -> tuple[list, str]:
        from fastmdm.zebra.evaluate import evaluate  # noqa: PLC0415
        rows = evaluate(model, self.task, self.held, strategies=cfg.eval_strategies.split(","))
        msg = ", ".join(f"{r['strategy']} {100 * r['puzzle_acc']:.1f}% (cells {100 * r['cell_acc']:.1f}%)"
                        for r in rows)
        return rows, f"held-out test puzzles n={len(self.held)}: {msg}"


def train(cfg: ZebraTrainConfig, *, resume: bool = False, log=None) -> dict:
    """Run training; returns {"model", "optimizer", "step", "history", "out"}."""
    return training.run(cfg, ZebraTask(), resume=resume, log=log)
