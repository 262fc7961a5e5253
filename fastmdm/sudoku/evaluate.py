"""Evaluate a Sudoku MDM: puzzle accuracy (whole grid valid), cell accuracy and model calls per strategy.

Decoding follows the paper's Sudoku setup by default: every blank is a mask, one model call per step,
and either one cell per step (`k=1`) or the blanks split over `steps` reverse steps, with Gumbel noise of
scale `score_noise` added to the ranking scores.
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch
from tqdm import tqdm

import fastmdm
from fastmdm.sudoku.data import MASK_ID, is_valid_solution

DEFAULT_STRATEGIES = ("random", "confidence", "margin", "entropy")


def _as_long(a):
    return torch.as_tensor(np.asarray(a)).long() if not isinstance(a, torch.Tensor) else a.long()


@torch.no_grad()
def solve_batch(model, puzzles: torch.Tensor, *, strategy="margin", k=None, steps=None, score_noise=0.0,
                generator=None, return_trace=False):
    """Fill the blanks (0) of puzzles [B, 81]; returns answers [B, 81] (or a Trace)."""
    x = _as_long(puzzles).to(next(model.parameters()).device)
    if k is None and steps is None:
        k = 1
    return fastmdm.sample(model, x, strategy=strategy, mask_id=MASK_ID, k=k, steps=steps,
                          score_noise=score_noise, generator=generator, return_trace=return_trace)


@torch.no_grad()
def evaluate(model, puzzles, solutions, *, strategies=DEFAULT_STRATEGIES, k=None, steps=None, score_noise=0.0,
             batch_size=256, seed=0, progress=False, rank=0, world_size=1) -> list[dict]:
    """One result row per strategy: {"strategy", "n", "solved", "puzzle_acc", "cell_acc", "nfe", "seconds"}.

    `puzzle_acc`: fraction of puzzles whose answer is a complete valid grid keeping the clues (for the
    engine's unique-solution puzzles that is the reference solution); `cell_acc`: fraction of blank cells
    equal to the reference solution; `nfe`: model calls per batch, averaged. Under torch.distributed each
    rank decodes every `world_size`-th puzzle and the counts are summed.
    """
    puzzles, solutions = _as_long(puzzles), _as_long(solutions)
    if puzzles.dim() != 2 or puzzles.shape[1] != 81 or puzzles.shape != solutions.shape:
        raise ValueError(f"puzzles and solutions: must both be [N, 81], got {tuple(puzzles.shape)} and "
                         f"{tuple(solutions.shape)}")
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in fastmdm.STRATEGIES:
            raise ValueError(f"strategies: unknown {s!r}; use a comma-separated subset of {sorted(fastmdm.STRATEGIES)}")
    puzzles, solutions = puzzles[rank::world_size], solutions[rank::world_size]
    was_training = model.training
    model.eval()
    rows = []
    for si, strategy in enumerate(strategies):
        g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed * 1000 + si * 7919 + rank)
        solved = cells_ok = cells = nfe = batches = 0
        t0 = time.perf_counter()
        it = range(0, puzzles.shape[0], batch_size)
        for i in tqdm(it, desc=f"eval {strategy}", disable=not progress, leave=False):
            p, s = puzzles[i:i + batch_size], solutions[i:i + batch_size]
            tr = solve_batch(model, p, strategy=strategy, k=k, steps=steps, score_noise=score_noise,
                             generator=g, return_trace=True)
            ans = tr.tokens.cpu()
            blank = p == MASK_ID
            solved += int(is_valid_solution(p, ans).sum())
            cells_ok += int(((ans == s) & blank).sum())
            cells += int(blank.sum())
            nfe += tr.nfe
            batches += 1
        counts = torch.tensor([solved, cells_ok, cells, nfe, batches, puzzles.shape[0]], dtype=torch.float64)
        if world_size > 1:
            import torch.distributed as dist  # noqa: PLC0415
            dist.all_reduce(counts)
        solved, cells_ok, cells, nfe, batches, n = counts.tolist()
        rows.append({"strategy": strategy, "n": int(n), "solved": int(solved),
                     "puzzle_acc": solved / max(n, 1), "cell_acc": cells_ok / max(cells, 1),
                     "nfe": nfe / max(batches, 1), "seconds": time.perf_counter() - t0})
    model.train(was_training)
    return rows


def format_table(results: dict[str, list[dict]]) -> str:
    """Markdown table: one row per strategy, a column pair per split."""
    splits = list(results)
    strategies = []
    for rows in results.values():
        for r in rows:
            if r["strategy"] not in strategies:
                strategies.append(r["strategy"])
    head = "| strategy | " + " | ".join(f"{s}: puzzles solved | {s}: cells right | {s}: model calls"
                                         for s in splits) + " |"
    sep = "|---|" + "---|---|---|" * len(splits)
    lines = [head, sep]
    for st in strategies:
        cols = []
        for sp in splits:
            r = next((r for r in results[sp] if r["strategy"] == st), None)
            cols += (["-"] * 3 if r is None else
                     [f"{100 * r['puzzle_acc']:.2f}% ({r['solved']}/{r['n']})", f"{100 * r['cell_acc']:.2f}%",
                      f"{r['nfe']:.1f}"])
        lines.append(f"| {st} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def to_json(results: dict, settings: dict) -> str:
    return json.dumps({"settings": settings, "results": results}, indent=2)


def plot(results: dict[str, list[dict]], path) -> None:
    """A bar chart of puzzle accuracy per strategy and split (needs matplotlib)."""
    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastmdm[plot]'") from e
    splits = list(results)
    strategies = [r["strategy"] for r in results[splits[0]]]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(strategies), 3.6))
    w = 0.8 / len(splits)
    for j, sp in enumerate(splits):
        acc = [100 * next(r for r in results[sp] if r["strategy"] == st)["puzzle_acc"] for st in strategies]
        bars = ax.bar([i + j * w for i in range(len(strategies))], acc, w, label=sp)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks([i + w * (len(splits) - 1) / 2 for i in range(len(strategies))], strategies)
    ax.set_ylabel("puzzles solved (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sweep(sweep: list[tuple[int, dict[str, list[dict]]]], path, xlabel: str = "cells filled per model call (k)"):
    """A line chart of puzzle accuracy against the swept setting, one line per strategy and split."""
    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastmdm[plot]'") from e
    xs = [x for x, _ in sweep]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for sp, style in zip(sweep[0][1], ("-", "--", ":", "-.")):
        for st in [r["strategy"] for r in sweep[0][1][sp]]:
            acc = [100 * next(r for r in res[sp] if r["strategy"] == st)["puzzle_acc"] for _, res in sweep]
            ax.plot(xs, acc, style, marker="o", label=f"{st} ({sp})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("puzzles solved (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_sweep(text: str) -> list[int]:
    """'1,2,4,8' -> [1, 2, 4, 8]; a clear error otherwise."""
    try:
        ks = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise SystemExit(f"--sweep-k: expected comma-separated integers >= 1 such as 1,2,4,8, got {text!r}")
    return ks


def load_eval_sets(args) -> dict:
    """{name: {"puzzles", "solutions"}} from --file or the project's test splits."""
    from fastmdm.sudoku import data as sdata  # noqa: PLC0415
    from fastmdm.sudoku import grids  # noqa: PLC0415
    if args.file:
        ds = grids.read_dataset(args.file)
        if "solutions" not in ds:
            raise SystemExit(f"--file {args.file}: evaluation needs '<puzzle> <solution>' lines")
        n = ds["puzzles"].shape[0] if args.n is None else min(args.n, ds["puzzles"].shape[0])
        return {str(args.file): {"puzzles": ds["puzzles"][:n], "solutions": ds["solutions"][:n]}}
    splits = [s.strip() for s in (args.split or "standard,hard").split(",") if s.strip()]
    for s in splits:
        if s not in sdata.TEST_SEEDS:
            raise SystemExit(f"--split: unknown {s!r}; use standard, hard or 'standard,hard'")
    return {s: sdata.test_set(s, args.n, args.cache_dir) for s in splits}


def run_cli(args) -> int:
    import torch.distributed as dist  # noqa: PLC0415

    from fastmdm.sudoku import model as smodel  # noqa: PLC0415
    import os  # noqa: PLC0415
    if args.threads:
        torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = args.device
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    sweep_k = parse_sweep(args.sweep_k) if getattr(args, "sweep_k", None) else None
    if sweep_k and (args.k or args.steps):
        raise SystemExit("--sweep-k replaces --k and --steps: pass only one of them")
    precision = smodel.resolve_precision(args.precision, device)
    model, cfg = smodel.load(args.checkpoint, device=device, precision=precision)
    sets = load_eval_sets(args)
    sweep = []
    for k in sweep_k or [args.k]:
        results = {}
        for name, d in sets.items():
            results[name] = evaluate(model, d["puzzles"], d["solutions"], strategies=args.strategies, k=k,
                                     steps=args.steps, score_noise=args.score_noise, batch_size=args.batch_size,
                                     seed=args.seed, progress=rank == 0, rank=rank, world_size=world)
        sweep.append((k or 1, results))
    if rank == 0:
        ck = args.checkpoint or str(smodel.SHIPPED_CHECKPOINT)
        for k, results in sweep:
            sched = f"steps={args.steps}" if args.steps else f"k={k}"
            print(f"checkpoint: {ck}; decoding {sched}, score_noise={args.score_noise}, seed={args.seed}, "
                  f"precision={precision}")
            print(format_table(results))
        settings = {"checkpoint": ck, "k": args.k, "steps": args.steps, "score_noise": args.score_noise,
                    "seed": args.seed, "n": args.n, "world_size": world, "device": device,
                    "precision": precision}
        if args.json:
            from fastmdm.checkpoint import atomic_write_json  # noqa: PLC0415
            body = {"settings": settings, "results": sweep[0][1]} if not sweep_k else \
                {"settings": {**settings, "sweep_k": sweep_k}, "sweep": [{"k": k, "results": r} for k, r in sweep]}
            atomic_write_json(args.json, body)
        if args.plot:
            if sweep_k:
                plot_sweep(sweep, args.plot)
            else:
                plot(sweep[0][1], args.plot)
    if world > 1:
        dist.barrier()
    return 0
