"""Train an L&O-NAE-SAT MDM: `fastmdm nae train` (one process) or under `torchrun` (DDP).

The loop is `fastmdm.training`'s (the Sudoku trainer's: schedule, exact resume, warm restarts, checkpoints).
Data: the native generator's stream, fresh every step and never repeated. Step s draws a start index in
[0, 2**62) from its own generator and takes `batch_size` consecutive sequences of seed `data_seed` from
there, so a run sees new sequences at every step and resumes exactly. The test set's seed
(`fastmdm.nae.data.TEST_SEED`) is refused as `data_seed`, and the evaluation generates unconditionally, so
no test sequence is ever a target.

Each row gets a masking rate t (stratified over the batch), every position (latent or observation) is masked
with probability t, and the loss is the masked-diffusion ELBO over all N + P positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastmdm import training
from fastmdm.nae import engine
from fastmdm.nae.data import TEST_SEED
from fastmdm.nae.model import POSITIONS, PRESETS, nae_model
from fastmdm.training import MDMObjective


@dataclass
class NAETrainConfig(training.LoopConfig):
    """One L&O-NAE-SAT training run (the loop's fields are `fastmdm.training.LoopConfig`'s)."""
    preset: str = "cpu"
    positions: str = "clauses"
    latents: int = 25
    observations: int = 275
    arity: int = 3
    structure_seed: int = 0
    data_seed: int = 1
    batch_size: int = 64
    eval_every: int = 1000
    eval_n: int = 100
    eval_strategies: str = "random,margin"
    out: str = "runs/nae"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; use one of {sorted(PRESETS)}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions: unknown {self.positions!r}; use one of {', '.join(POSITIONS)}")
        super().__post_init__()
        _ = self.task  # validates latents, observations, arity, structure_seed
        training.check_data_seed(self.data_seed, TEST_SEED)

    @property
    def task(self) -> engine.Task:
        return engine.Task(self.latents, self.observations, self.arity, self.structure_seed)


def make_batch(task: engine.Task, data_seed: int, batch_size: int, g: torch.Generator):
    """(inputs, targets, masked, p_mask, fillable) for one step, every random draw from `g`. The generator runs
    on torch's thread count (`--threads`); its output does not depend on it."""
    start = training.stream_start(g)
    rows = engine.generate(batch_size, task, data_seed, threads=torch.get_num_threads(), start=start)
    x0 = torch.from_numpy(rows).long()
    return training.masked_batch(x0, None, engine.MASK_ID, g)


class NAETask:
    """The L&O-NAE-SAT `fastmdm.training.TrainingTask`."""

    def build_model(self, cfg: NAETrainConfig):
        return nae_model(cfg.task, cfg.preset, cfg.positions)

    def describe(self, cfg: NAETrainConfig) -> str:
        return f"L&O-NAE-SAT MDM, preset {cfg.preset}, {cfg.positions} positions, {cfg.task.describe()}"

    def prepare(self, cfg: NAETrainConfig, log) -> None:
        self.task = cfg.task

    def objective(self, model):
        return MDMObjective(model)

    def batch(self, cfg: NAETrainConfig, g: torch.Generator, step: int) -> tuple:
        return make_batch(self.task, cfg.data_seed, cfg.batch_size, g)

    def evaluate(self, model, cfg: NAETrainConfig) -> tuple[list, str]:
        from fastmdm.nae.evaluate import evaluate  # noqa: PLC0415
        rows = evaluate(model, self.task, cfg.eval_n, strategies=cfg.eval_strategies.split(","), seed=0)
        msg = ", ".join(f"{r['strategy']} {100 * r['observation_acc']:.1f}%" for r in rows)
        return rows, f"observation accuracy of {cfg.eval_n} generated sequences: {msg}"


def train(cfg: NAETrainConfig, *, resume: bool = False, log=None) -> dict:
    """Run training; returns {"model", "optimizer", "step", "history", "out"}."""
    return training.run(cfg, NAETask(), resume=resume, log=log)
