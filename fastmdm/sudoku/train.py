"""Train the Sudoku MDM: `fastmdm sudoku train` (one process) or under `torchrun` (DDP: gloo on CPU, nccl on CUDA).

Each step: draw a batch of training puzzles (a fixed pool from the puzzle engine), augment it with random
Sudoku symmetries, draw a masking rate t per puzzle (stratified over the batch), mask each blank cell of
the puzzle with probability t (clues always stay visible), and minimise the masked-diffusion ELBO
(`fastmdm.mdm_loss_from_hidden`, normalised by the number of blank cells). AdamW, linear warmup + cosine
decay, gradient clipping, bf16 autocast on CUDA.

`arch="arm-rowmajor"` or `"arm-solver"` trains an autoregressive baseline of the same body instead
(`fastmdm.sudoku.arm`): causal attention, teacher forcing on the blanks written in that order.

Exact resume: every random draw of step s comes from a generator seeded by (seed, rank, s), and a
checkpoint stores the weights, the optimizer state and the step, so training N steps in one go or in
pieces with `--resume` gives the same parameters.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm import tqdm

import fastmdm
from fastmdm import checkpoint as ckpt
from fastmdm.models import TransformerConfig
from fastmdm.sudoku import data as sdata
from fastmdm.sudoku.arm import ARCHS, ARMObjective, fill_orders, sequences
from fastmdm.sudoku.grids import apply_symmetries, augment, random_symmetries
from fastmdm.sudoku.model import PRESETS, sudoku_model


@dataclass
class TrainConfig:
    """One training run. The `fastmdm sudoku train` options take their defaults from here."""
    preset: str = "cpu"
    arch: str = "mdm"                   # "mdm", or an autoregressive baseline: "arm-rowmajor", "arm-solver"
    model_overrides: dict = field(default_factory=dict)
    steps: int | None = None            # length of the schedule (required unless `minutes` is given)
    minutes: float | None = None        # wall-clock budget; without `steps` the schedule is sized to fit it
    batch_size: int = 128               # per process
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    seed: int = 0
    split: str = "standard"
    n_train: int = 100_000
    data_seed: int = 17
    data: str = "engine"                # "engine" or "synthetic" (tests only)
    eval_every: int = 500
    eval_n: int = 200
    eval_strategies: str = "margin"
    save_every: int = 500
    log_every: int = 20
    threads: int | None = None
    compile: bool = False
    stop_after: int | None = None       # stop this run at that step (the schedule still spans `steps`)
    out: str = "runs/sudoku"
    cache_dir: str | None = None
    init_from: str | None = None        # start from this checkpoint's weights (fresh optimizer and schedule)

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; use one of {sorted(PRESETS)}")
        if self.steps is None and self.minutes is None:
            raise ValueError("steps, minutes: give the schedule's length in steps, a time budget in minutes, "
                             "or both")
        for name in ("steps", "batch_size", "n_train", "warmup_steps", "stop_after", "threads"):
            v = getattr(self, name)
            least = 0 if name == "warmup_steps" else 1
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < least):
                raise ValueError(f"{name}: must be an integer >= {least}, got {v!r}")
        for name in ("eval_every", "eval_n", "save_every", "log_every", "seed", "data_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: must be an integer >= 0, got {v!r}")
        for name, lo in (("minutes", 0.0), ("lr", 0.0)):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > lo):
                raise ValueError(f"{name}: must be a number > 0, got {v!r}")
        for name in ("weight_decay", "grad_clip", "min_lr_ratio"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}: must be a number >= 0, got {v!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch: must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.data not in ("engine", "synthetic"):
            raise ValueError(f"data: must be 'engine' or 'synthetic', got {self.data!r}")
        if self.split not in sdata.TEST_SEEDS:
            raise ValueError(f"split: must be one of {sorted(sdata.TEST_SEEDS)}, got {self.split!r}")


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


class MDMObjective(torch.nn.Module):
    """model + loss in one forward, so DDP sees the whole step."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs, targets, masked, p_mask, fillable):
        hidden = self.model.forward_hidden(inputs)
        head = self.model.get_output_embeddings()
        return fastmdm.mdm_loss_from_hidden(hidden, head.weight, targets, masked, p_mask, bias=head.bias,
                                            fillable=fillable)


def make_batch(pool_p: torch.Tensor, pool_s: torch.Tensor, batch_size: int, g: torch.Generator):
    """(inputs, targets, masked, p_mask, fillable) for one step, all drawn from generator `g`."""
    idx = torch.randint(pool_p.shape[0], (batch_size,), generator=g)
    p, s = augment(pool_p[idx], pool_s[idx], generator=g)
    p, s = p.long(), s.long()
    fillable = p == sdata.MASK_ID
    # stratified masking rates: one per batch row, spread evenly over (0, 1)
    t = (torch.randperm(batch_size, generator=g).float() + torch.rand(batch_size, generator=g)) / batch_size
    masked, p_mask = fastmdm.sample_mask(s, fillable=fillable, t=t, generator=g)
    inputs = s.masked_fill(masked, sdata.MASK_ID)
    return inputs, s, masked, p_mask, fillable


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


def _dist_info():
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), ws, int(os.environ.get("LOCAL_RANK", "0"))


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


def save_training_state(out: Path, model, opt, step: int, total: int, cfg: TrainConfig, extra: dict):
    tensors, meta = ckpt.optimizer_tensors(opt)
    ckpt.save_model(out, model, extra={"train": asdict(cfg), **extra})
    ckpt.atomic_save_tensors(out / ckpt.TRAINER_FILE, tensors)
    ckpt.atomic_write_json(out / ckpt.TRAINER_META, {"step": step, "total_steps": total, **meta})


def total_steps(trained: dict) -> int | None:
    """Optimizer steps behind a checkpoint's `trained` record, counting the runs it was warm-started from."""
    if trained.get("steps") is None:
        return None
    return int(trained["steps"]) + sum(int(r.get("steps", 0)) for r in trained.get("init_from", []) or [])


def _warm_start(model, source, device, log) -> list:
    """Load `source`'s weights into `model` (same architecture required); return its training lineage."""
    src = Path(source)
    src_cfg = ckpt.read_config(src)
    ours = model.config.to_dict()
    # fields an older checkpoint lacks take their defaults (what loading it gives)
    defaults = {f.name: f.default for f in fields(TransformerConfig) if f.default is not MISSING}
    theirs = {**defaults, **src_cfg.get("model", {})}
    diff = sorted(k for k in ours if k != "attention_backend" and theirs.get(k) != ours[k])
    if diff:
        detail = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours[k]!r} here" for k in diff)
        raise ValueError(f"init_from {src}: the model differs from this run's ({detail}); use the same preset")
    loaded, _ = ckpt.load_model(src, map_location=device)
    model.load_state_dict(loaded.state_dict())
    trained = dict(src_cfg.get("trained", {}))
    steps = total_steps(trained)
    earlier = trained.pop("init_from", []) or []
    wall = trained.pop("wall_s_this_run", None)
    if wall is not None:  # that run's own wall time, kept so a lineage states its cost
        trained["wall_s"] = wall
    log(f"initialised from {src} ({'?' if steps is None else f'{steps:,}'} steps in all, "
        f"{trained.get('samples', '?')} samples in its last run)")
    return [*earlier, {"path": str(src), **trained}]


def train(cfg: TrainConfig, *, resume: bool = False, pool=None, log=None) -> dict:
    """Run training; returns {"model", "step", "history", "out"}. `pool`: optional (train, held) numpy dicts."""
    rank, world, local_rank = _dist_info()
    distributed = world > 1
    if log is None:
        def log(msg):
            if rank == 0:
                tqdm.write(msg, file=sys.stderr)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(cfg.out)

    torch.manual_seed(cfg.seed)
    model = sudoku_model(cfg.preset, arch=cfg.arch, **cfg.model_overrides).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    step, total = 0, cfg.steps
    if resume and (out / ckpt.TRAINER_META).is_file():
        loaded, _ = ckpt.load_model(out, map_location=device)
        model.load_state_dict(loaded.state_dict())
        meta = ckpt.read_json(out, ckpt.TRAINER_META)
        try:
            ckpt.load_optimizer_tensors(opt, ckpt.read_tensors(out, ckpt.TRAINER_FILE, device), meta)
            step, total = int(meta["step"]), int(meta["total_steps"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ckpt.CheckpointError(f"checkpoint {out} looks corrupted: {ckpt.TRAINER_META} and "
                                       f"{ckpt.TRAINER_FILE} do not hold this run's optimizer state ({e}); "
                                       "start without --resume or pick another --out") from None
        log(f"resumed from {out} at step {step} of {total}")
    elif resume:
        log(f"--resume: no checkpoint in {out}; starting fresh")
    lineage = []  # the runs whose weights this run started from, oldest first
    if step == 0 and cfg.init_from:
        lineage = _warm_start(model, cfg.init_from, device, log)

    train_data, held = pool if pool is not None else load_data(cfg, log)
    pool_p = torch.as_tensor(train_data["puzzles"]).long()
    pool_s = torch.as_tensor(train_data["solutions"]).long()
    arm = cfg.arch != "mdm"
    if arm:
        t0 = time.perf_counter()
        pool_r = torch.as_tensor(fill_orders(train_data["puzzles"], train_data["solutions"],
                                             cfg.arch.removeprefix("arm-"))).long()
        log(f"data: {cfg.arch} fill orders of {pool_r.shape[0]} puzzles in {time.perf_counter() - t0:.1f}s")
    objective = ARMObjective(model) if arm else MDMObjective(model)
    if cfg.compile:
        objective = torch.compile(objective)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415
        objective = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)
    n_params = model.num_parameters()

    def trained_record() -> dict:  # what a checkpoint says about the training behind it
        return {"steps": step, "samples": step * cfg.batch_size * world, "world_size": world,
                "parameters": n_params, "device": str(device), "init_from": lineage}
    log(f"model: {cfg.arch}, preset {cfg.preset}, {n_params:,} parameters; {world} process(es) x batch "
        f"{cfg.batch_size} on {device}")

    t_start = time.perf_counter()
    deadline = None if cfg.minutes is None else t_start + 60 * cfg.minutes
    if total is None:  # size the schedule to the time budget from the first steps' throughput
        total = 0
    history = []
    done_samples = 0
    bar = tqdm(total=total or None, initial=step, disable=rank != 0, desc="train", unit="step",
               dynamic_ncols=True, file=sys.stderr)
    ema = None
    recal_every, recal_t = 50, None
    while True:
        if total and step >= total:
            break
        if cfg.stop_after is not None and step >= cfg.stop_after:
            break
        stop = deadline is not None and time.perf_counter() > deadline
        if distributed:
            flag = torch.tensor([float(stop)], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            log(f"time budget of {cfg.minutes} min reached at step {step}")
            break
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank * 7_919 + step)
        batch = make_arm_batch(pool_p, pool_s, pool_r, cfg.batch_size, g) if arm else \
            make_batch(pool_p, pool_s, cfg.batch_size, g)
        batch = [t.to(device, non_blocking=True) for t in batch]
        lr = lr_at(cfg, step, total or 10**9)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = objective(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        done_samples += cfg.batch_size * world
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if cfg.steps is None and step % recal_every == 0:
            # a time budget without a step count: size the schedule from the recent throughput, again every
            # `recal_every` steps (the machine may be shared), keeping about 3% of the time for evaluation
            now = time.perf_counter()
            if recal_t is not None:
                per_step = (now - recal_t) / recal_every
                est = step + max(1, int(0.97 * (deadline - now) / per_step))
                if distributed:
                    tt = torch.tensor([est], device=device)
                    torch.distributed.all_reduce(tt, op=torch.distributed.ReduceOp.MIN)
                    est = int(tt.item())
                if not total:
                    log(f"schedule sized to the time budget: about {est} steps")
                total = est
                bar.total = total
            recal_t = time.perf_counter()
        elapsed = time.perf_counter() - t_start
        bar.update(1)
        if step % cfg.log_every == 0 or step == total:
            sps = done_samples / max(elapsed, 1e-9)
            bar.set_postfix(loss=f"{ema:.4f}", lr=f"{lr:.2e}", samples_s=f"{sps:.0f}")
            history.append({"step": step, "loss": lv, "loss_ema": ema, "lr": lr, "grad_norm": float(gnorm),
                            "samples_per_s": sps, "elapsed_s": elapsed})
        last = bool(total) and step >= total
        if cfg.eval_every and cfg.eval_n and (step % cfg.eval_every == 0 or last):
            if rank == 0:
                from fastmdm.sudoku.evaluate import evaluate  # noqa: PLC0415
                n = min(cfg.eval_n, held["puzzles"].shape[0])
                rows = evaluate(model, held["puzzles"][:n], held["solutions"][:n],
                                strategies=cfg.eval_strategies, k=1, batch_size=256, seed=0)
                msg = ", ".join(f"{r['strategy']} {100 * r['puzzle_acc']:.1f}% (cells {100 * r['cell_acc']:.1f}%)"
                                for r in rows)
                log(f"step {step}: held-out {cfg.split} n={n}: {msg}; loss {ema:.4f}; {elapsed / 60:.1f} min")
                history.append({"step": step, "eval": rows, "elapsed_s": elapsed})
        if rank == 0 and cfg.save_every and (step % cfg.save_every == 0 or last):
            save_training_state(out, model, opt, step, total, cfg, {"trained": trained_record()})
            with open(out / "history.jsonl", "a") as f:
                for h in history:
                    f.write(json.dumps(h) + "\n")
            history = []
    bar.close()
    if rank == 0 and cfg.save_every:
        save_training_state(out, model, opt, step, total or step, cfg,
                            {"trained": {**trained_record(), "wall_s_this_run": time.perf_counter() - t_start}})
        if history:
            with open(out / "history.jsonl", "a") as f:
                for h in history:
                    f.write(json.dumps(h) + "\n")
    if distributed:
        torch.distributed.barrier()
    return {"model": model, "optimizer": opt, "step": step, "history": history, "out": out}
