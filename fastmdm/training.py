"""The training loop every fastmdm task shares: one process or `torchrun` (DDP: gloo on CPU, nccl on CUDA).

A task (Sudoku, L&O-NAE-SAT, ...) supplies what differs, as a `TrainingTask`: the model, the data, the batch
of a step, the objective (model + loss in one module, so DDP sees the whole step) and the held-out
evaluation. `run(cfg, task)` does the rest, the same for every task:

- AdamW, linear warmup then a cosine decay to `min_lr_ratio` of the peak, gradient clipping, bf16 autocast
  on CUDA. With `minutes` and no `steps`, the schedule is sized to the time budget from the measured
  throughput, again every 50 steps (a shared machine's speed changes).
- Exact resume: every random draw of step s comes from a generator seeded by (seed, rank, s), and a
  checkpoint (`fastmdm.checkpoint`: safetensors + JSON, atomic writes) stores the weights, the optimizer
  state and the step, so N steps in one go or in pieces with `resume=True` give the same parameters.
- Warm restarts (`init_from`): another checkpoint's weights, a fresh optimizer and schedule; the
  checkpoint's `trained` record keeps the lineage of runs behind it.
- A progress bar, a loss log (`history.jsonl` in `out`), evaluations every `eval_every` steps.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from fastmdm import checkpoint as ckpt
from fastmdm.loss import mdm_loss_from_hidden, sample_mask
from fastmdm.models import TransformerConfig


@dataclass
class LoopConfig:
    """The fields of a training run that every task shares; a task's config extends it with its own."""
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
    eval_every: int = 500
    eval_n: int = 200
    save_every: int = 500
    log_every: int = 20
    threads: int | None = None
    compile: bool = False
    stop_after: int | None = None       # stop this run at that step (the schedule still spans `steps`)
    out: str = "runs/train"
    init_from: str | None = None        # start from this checkpoint's weights (fresh optimizer and schedule)

    def __post_init__(self):
        if self.steps is None and self.minutes is None:
            raise ValueError("steps, minutes: give the schedule's length in steps, a time budget in minutes, "
                             "or both")
        for name in ("steps", "batch_size", "warmup_steps", "stop_after", "threads"):
            v = getattr(self, name)
            least = 0 if name == "warmup_steps" else 1
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < least):
                raise ValueError(f"{name}: must be an integer >= {least}, got {v!r}")
        for name in ("eval_every", "eval_n", "save_every", "log_every", "seed"):
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


class TrainingTask(Protocol):
    """What a task gives `run`. `prepare` is called once, after the model exists (and was resumed or
    warm-started), before the first step; `batch` must draw every random number from `g` (and may depend on the
    step, for a curriculum), so that a resumed run draws the same batches."""

    def build_model(self, cfg) -> torch.nn.Module: ...
    def describe(self, cfg) -> str: ...                       # e.g. "mdm, preset cpu" for the log
    def prepare(self, cfg, log) -> None: ...                  # load or generate the data
    def objective(self, model) -> torch.nn.Module: ...        # forward(*batch) -> scalar loss
    def batch(self, cfg, g: torch.Generator, step: int) -> tuple: ...   # step: for a curriculum
    def evaluate(self, model, cfg) -> tuple[list, str]: ...   # (rows for the history, one log line)


class MDMObjective(torch.nn.Module):
    """An MDM and its masked-diffusion ELBO in one forward, so DDP sees the whole step: the objective of a
    task whose batches are (inputs, targets, masked, p_mask, fillable)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs, targets, masked, p_mask, fillable):
        hidden = self.model.forward_hidden(inputs)
        head = self.model.get_output_embeddings()
        return mdm_loss_from_hidden(hidden, head.weight, targets, masked, p_mask, bias=head.bias, fillable=fillable)


def masked_batch(x0: torch.Tensor, fillable: torch.Tensor | None, mask_id: int, g: torch.Generator):
    """(inputs, targets, masked, p_mask, fillable) of one MDM step on clean rows `x0` [B, L]: one masking rate
    per row, stratified over the batch (row rates spread evenly over (0, 1)), each fillable position (every
    position when None) masked with its row's rate; every draw from `g`."""
    b = x0.shape[0]
    t = (torch.randperm(b, generator=g).float() + torch.rand(b, generator=g)) / b
    masked, p_mask = sample_mask(x0, fillable=fillable, t=t, generator=g)
    if fillable is None:
        fillable = torch.ones_like(masked)
    return x0.masked_fill(masked, mask_id), x0, masked, p_mask, fillable


def stream_start(g: torch.Generator) -> int:
    """A start index in [0, 2**62) of a generator's deterministic stream: fresh data at every step."""
    return int(torch.randint(2**62, (1,), generator=g, dtype=torch.int64))


def check_data_seed(seed, test_seed: int) -> None:
    """A training data seed: an integer in [0, 2**64), never the test set's."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"data_seed: must be an integer in [0, 2**64), got {seed!r}")
    if seed == test_seed:
        raise ValueError(f"data_seed: {test_seed} is the test set's seed; pick another")


def sequence_mdm(dims: dict, vocab_size: int, mask_id: int, length: int, positions: str = "learned"):
    """A bidirectional `Transformer` for a task of fixed-length sequences whose positions have fixed roles
    (L&O-NAE-SAT, Zebra): by default one learned embedding per position, or the registered scheme `positions`;
    `dims`: d_model, n_layers, n_heads, d_ff."""
    from fastmdm.models import Transformer  # noqa: PLC0415
    return Transformer(TransformerConfig(**{**dims, "vocab_size": vocab_size, "mask_token_id": mask_id,
                                            "max_len": length, "positions": positions}))


def task_from_checkpoint(config: dict, task_cls, names, where: str, command: str, what: str):
    """The `what` task (e.g. "Zebra") a checkpoint's config dict was trained on:
    `task_cls(**{name: config["train"][name]})`."""
    train = config.get("train") or {}
    missing = [k for k in names if k not in train]
    if missing:
        raise ckpt.CheckpointError(f"{where}: config.json does not name its {what} task "
                                   f"(train.{missing[0]} is missing); pass a checkpoint written by `{command}`")
    try:
        return task_cls(**{k: train[k] for k in names})
    except (TypeError, ValueError) as e:
        raise ckpt.CheckpointError(f"{where}: config.json names an invalid task ({e})") from None


def load_task_model(path, task_cls, names, command: str, what: str, vocab_size: int, mask_id: int, device="cpu",
                    shipped=None):
    """(model, task, config dict) of a `sequence_mdm` checkpoint that `command --out DIR` wrote; `path` None is
    the task's shipped checkpoint `shipped` (a FileNotFoundError that says what to pass when it is missing)."""
    if path is None:
        if shipped is None or not (Path(shipped) / "model.safetensors").is_file():
            raise FileNotFoundError(f"the shipped {what} checkpoint is missing from {shipped}; pass --checkpoint DIR "
                                    f"(a directory written by `{command} --out DIR`)")
        path = shipped
    path = Path(path)
    model, cfg = ckpt.load_model(path, map_location=device)
    task = task_from_checkpoint(cfg, task_cls, names, f"checkpoint {path}", command, what)
    mc = model.config
    if mc.causal or mc.vocab_size != vocab_size or mc.max_len != task.length or mc.mask_token_id != mask_id:
        raise ckpt.CheckpointError(f"checkpoint {path}: not a {what} MDM of its task (vocabulary {mc.vocab_size}, "
                                   f"length {mc.max_len}, mask {mc.mask_token_id}; want {vocab_size}, {task.length}, "
                                   f"{mask_id}); pass a checkpoint written by `{command}`")
    return model, task, cfg


def lr_at(cfg: LoopConfig, step: int, total: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) in one process."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), ws, int(os.environ.get("LOCAL_RANK", "0"))


def save_training_state(out: Path, model, opt, step: int, total: int, cfg, extra: dict):
    tensors, meta = ckpt.optimizer_tensors(opt)
    ckpt.save_model(out, model, extra={"train": asdict(cfg), **extra})
    ckpt.atomic_save_tensors(out / ckpt.TRAINER_FILE, tensors)
    ckpt.atomic_write_json(out / ckpt.TRAINER_META, {"step": step, "total_steps": total, **meta})


def total_steps(trained: dict) -> int | None:
    """Optimizer steps behind a checkpoint's `trained` record, counting the runs it was warm-started from."""
    if trained.get("steps") is None:
        return None
    return int(trained["steps"]) + sum(int(r.get("steps", 0)) for r in trained.get("init_from", []) or [])


def warm_start(model, source, device, log) -> list:
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


def _resume(out: Path, model, opt, device, log) -> tuple[int, int | None]:
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
    return step, total


def _append_history(out: Path, history: list) -> None:
    with open(out / "history.jsonl", "a") as f:
        for h in history:
            f.write(json.dumps(h) + "\n")
    history.clear()


def run(cfg: LoopConfig, task: TrainingTask, *, resume: bool = False, log=None) -> dict:
    """Train `task`'s model under `cfg`; returns {"model", "optimizer", "step", "history", "out"}."""
    rank, world, local_rank = dist_info()
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
    model = task.build_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    step, total = 0, cfg.steps
    if resume and (out / ckpt.TRAINER_META).is_file():
        step, total = _resume(out, model, opt, device, log)
    elif resume:
        log(f"--resume: no checkpoint in {out}; starting fresh")
    lineage = []  # the runs whose weights this run started from, oldest first
    if step == 0 and cfg.init_from:
        lineage = warm_start(model, cfg.init_from, device, log)

    task.prepare(cfg, log)
    objective = task.objective(model)
    if cfg.compile:
        objective = torch.compile(objective)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415
        objective = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)
    n_params = model.num_parameters()

    def trained_record() -> dict:  # what a checkpoint says about the training behind it
        return {"steps": step, "samples": step * cfg.batch_size * world, "world_size": world,
                "parameters": n_params, "device": str(device), "init_from": lineage}
    log(f"model: {task.describe(cfg)}, {n_params:,} parameters; {world} process(es) x batch "
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
        batch = [t.to(device, non_blocking=True) for t in task.batch(cfg, g, step)]
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
        if cfg.eval_every and cfg.eval_n and (step % cfg.eval_every == 0 or last) and rank == 0:
            rows, msg = task.evaluate(model, cfg)
            log(f"step {step}: {msg}; loss {ema:.4f}; {elapsed / 60:.1f} min")
            history.append({"step": step, "eval": rows, "elapsed_s": elapsed})
        if rank == 0 and cfg.save_every and (step % cfg.save_every == 0 or last):
            save_training_state(out, model, opt, step, total, cfg, {"trained": trained_record()})
            _append_history(out, history)
    bar.close()
    if rank == 0 and cfg.save_every:
        save_training_state(out, model, opt, step, total or step, cfg,
                            {"trained": {**trained_record(), "wall_s_this_run": time.perf_counter() - t_start}})
        if history:
            _append_history(out, history)
    if distributed:
        torch.distributed.barrier()
    return {"model": model, "optimizer": opt, "step": step, "history": history, "out": out}
