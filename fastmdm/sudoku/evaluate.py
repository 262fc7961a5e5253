"""Evaluate a Sudoku MDM: puzzle accuracy (whole grid valid), cell accuracy and model calls per decoding
strategy; and the model's answers to puzzles.

Decoding follows the paper's Sudoku setup by default: every blank is a mask, one model call per step,
and either one cell per step (`k=1`), `k` cells per step, the blanks split over `steps` reverse steps, or a
`threshold` (every blank whose score reaches it, at least the best), with Gumbel noise of scale `score_noise`
added to the ranking scores.

Thresholds here are on one scale for every strategy, a number in (0, 1]: confidence p(digit), margin p1 - p2,
random its uniform noise, and for entropy exp(-H(p)) (1 for a certain cell), i.e. the library's
`fastmdm.sample(threshold=ln T)` on its -H(p) scores (`score_threshold`).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm import tqdm

import fastmdm
from fastmdm.engine import has_hidden_path
from fastmdm.stats import wilson_interval
from fastmdm.sudoku.arm import answer_arm, arm_order_of, is_arm
from fastmdm.sudoku.data import MASK_ID
from fastmdm.sudoku.grids import valid_solutions

DEFAULT_STRATEGIES = ("random", "confidence", "margin", "entropy")


def _as_long(a):
    return torch.as_tensor(np.asarray(a)).long() if not isinstance(a, torch.Tensor) else a.long()


class CallTicker:
    """`model` with a progress bar that moves once per model call: `fastmdm.sample` has no progress hook,
    so this stands in for the model, forwarding calls, the hidden-state path and every attribute."""

    def __init__(self, model, bar):
        self._model, self._bar = model, bar
        if has_hidden_path(model):  # offer the hidden-state path only where the model has it
            self.forward_hidden = self._forward_hidden

    def _forward_hidden(self, *args, **kwargs):
        out = self._model.forward_hidden(*args, **kwargs)
        self._bar.update(1)
        return out

    def get_output_embeddings(self):
        return self._model.get_output_embeddings()

    def __call__(self, *args, **kwargs):
        out = self._model(*args, **kwargs)
        self._bar.update(1)
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


def model_calls(puzzles, *, k=None, steps=None, threshold=None, batch_size=256) -> int:
    """Model calls decoding `puzzles` [N, 81] takes in batches of `batch_size`: per batch, its most blanks
    split by `k` cells per call, or `steps` calls (fewer when every row has fewer blanks). With a `threshold`
    the count depends on the model: this is its most, one cell per call."""
    blanks = (_as_long(puzzles) == MASK_ID).sum(1)
    total = 0
    for i in range(0, blanks.shape[0], batch_size):
        b = int(blanks[i:i + batch_size].max())
        total += min(steps, b) if steps is not None else math.ceil(b / (1 if threshold is not None else k or 1))
    return total


def score_threshold(strategy: str, threshold: float | None) -> float | None:
    """The library's threshold for this module's `threshold` T in (0, 1]: T itself, ln(T) for entropy (whose
    scores are -H(p), so exp(-H(p)) >= T)."""
    if threshold is None:
        return None
    return math.log(threshold) if fastmdm.STRATEGIES.get(strategy) == "entropy" else float(threshold)


def check_threshold(strategy: str, threshold: float | None) -> None:
    """ValueError unless `threshold` is a number in (0, 1] that `strategy`'s scores can reach."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold: expected a number in (0, 1] (1 = only certain cells), got {threshold!r}")
    if fastmdm.STRATEGIES.get(strategy) == "random" and threshold >= 1:
        raise ValueError("threshold: random scores are uniform in (0, 1) and never reach 1; pass a threshold "
                         "below 1 or leave random out")


def calls_per_puzzle(order: torch.Tensor) -> torch.Tensor:
    """Model calls each puzzle took, from a `Trace.order` [B, 81]: the calls up to the one that filled its last
    blank (a finished puzzle is left out of later calls; 0 for a puzzle without blanks)."""
    return order.max(-1).values + 1


@torch.no_grad()
def decode_puzzles(model, puzzles: torch.Tensor, *, strategy="margin", k=None, steps=None, threshold=None,
                   score_noise=0.0, generator=None, return_trace=False):
    """The model's answers to puzzles [B, 81] (blanks 0) in one batch: answers [B, 81] (or a Trace).
    `threshold`: in (0, 1] on this module's scale (see the module docstring)."""
    x = _as_long(puzzles).to(next(model.parameters()).device)
    check_threshold(strategy, threshold)
    if k is None and steps is None and threshold is None:
        k = 1
    return fastmdm.sample(model, x, strategy=strategy, mask_id=MASK_ID, k=k, steps=steps,
                          threshold=score_threshold(strategy, threshold), score_noise=score_noise,
                          generator=generator, return_trace=return_trace)


def _bar_total(puzzles, k, steps, threshold, batch_size):
    """A progress bar's total: the exact count of model calls, unknown (None) with a threshold."""
    return None if threshold is not None else model_calls(puzzles, k=k, steps=steps, batch_size=batch_size)


@torch.no_grad()
def answer_puzzles(model, puzzles, *, strategy="margin", k=None, steps=None, threshold=None, score_noise=0.0,
                   seed=0, batch_size=256, progress=False) -> tuple[np.ndarray, np.ndarray]:
    """(answers int8 [N, 81], valid bool [N]) for puzzles [N, 81], decoded in batches of `batch_size`."""
    puzzles = _as_long(puzzles)
    if is_arm(model):
        answers, valid, _ = answer_arm(model, puzzles, batch_size=batch_size, progress=progress)
        return answers, valid
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    answers, valid = [], []
    with tqdm(total=_bar_total(puzzles, k, steps, threshold, batch_size), desc=f"solve {strategy}",
              unit="call", disable=not progress, leave=False) as bar:
        ticking = CallTicker(model, bar)
        for i in range(0, len(puzzles), batch_size):
            p = puzzles[i:i + batch_size]
            a = decode_puzzles(ticking, p, strategy=strategy, k=k, steps=steps, threshold=threshold,
                               score_noise=score_noise, generator=g).cpu()
            answers.append(a.to(torch.int8).numpy())
            valid.append(valid_solutions(p, a).numpy())
    if not answers:
        return np.zeros((0, 81), np.int8), np.zeros(0, bool)
    return np.concatenate(answers), np.concatenate(valid)


@torch.no_grad()
def evaluate(model, puzzles, solutions, *, strategies=DEFAULT_STRATEGIES, k=None, steps=None, threshold=None,
             score_noise=0.0, batch_size=256, seed=0, progress=False, rank=0, world_size=1,
             arm_cells_given: bool = False) -> list[dict]:
    """One result row per strategy: {"strategy", "n", "solved", "puzzle_acc", "puzzle_acc_ci95", "cell_acc",
    "nfe", "calls_per_puzzle", "seconds"}.

    An autoregressive baseline (`fastmdm.sudoku.arm`) decodes in its own order and gives one row, named
    "arm-<order>", whatever `strategies` says; with `arm_cells_given` a second row follows, decoded with the
    blanks written in its training order (`evaluate_arm(cells_given=True)`).

    `puzzle_acc`: fraction of puzzles whose answer is a complete valid grid keeping the clues (for the
    engine's unique-solution puzzles that is the reference solution), `puzzle_acc_ci95` its 95% Wilson
    interval; `cell_acc`: fraction of blank cells equal to the reference solution; `nfe`: model calls per
    batch, averaged; `calls_per_puzzle`: the calls each puzzle took (`calls_per_puzzle()`), averaged over the
    puzzles. `threshold`: in (0, 1], see the module docstring. Under torch.distributed each rank decodes every
    `world_size`-th puzzle and the counts are summed.
    """
    puzzles, solutions = _as_long(puzzles), _as_long(solutions)
    if puzzles.dim() != 2 or puzzles.shape[1] != 81 or puzzles.shape != solutions.shape:
        raise ValueError(f"puzzles and solutions: must both be [N, 81], got {tuple(puzzles.shape)} and "
                         f"{tuple(solutions.shape)}")
    if is_arm(model):
        return [evaluate_arm(model, puzzles, solutions, batch_size=batch_size, progress=progress, rank=rank,
                             world_size=world_size, cells_given=given)
                for given in ((False, True) if arm_cells_given else (False,))]
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in fastmdm.STRATEGIES:
            raise ValueError(f"strategies: unknown {s!r}; use a comma-separated subset of {sorted(fastmdm.STRATEGIES)}")
        check_threshold(s, threshold)
    puzzles, solutions = puzzles[rank::world_size], solutions[rank::world_size]
    was_training = model.training
    model.eval()
    rows = []
    for si, strategy in enumerate(strategies):
        g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed * 1000 + si * 7919 + rank)
        solved = cells_ok = cells = nfe = batches = puzzle_calls = 0
        t0 = time.perf_counter()
        with tqdm(total=_bar_total(puzzles, k, steps, threshold, batch_size), desc=f"eval {strategy}",
                  unit="call", disable=not progress, leave=False) as bar:
            ticking = CallTicker(model, bar)
            for i in range(0, puzzles.shape[0], batch_size):
                p, s = puzzles[i:i + batch_size], solutions[i:i + batch_size]
                tr = decode_puzzles(ticking, p, strategy=strategy, k=k, steps=steps, threshold=threshold,
                                    score_noise=score_noise, generator=g, return_trace=True)
                ans = tr.tokens.cpu()
                blank = p == MASK_ID
                solved += int(valid_solutions(p, ans).sum())
                cells_ok += int(((ans == s) & blank).sum())
                cells += int(blank.sum())
                nfe += tr.nfe
                puzzle_calls += int(calls_per_puzzle(tr.order).sum())
                batches += 1
        counts = torch.tensor([solved, cells_ok, cells, nfe, batches, puzzles.shape[0], puzzle_calls],
                              dtype=torch.float64)
        if world_size > 1:
            import torch.distributed as dist  # noqa: PLC0415
            dist.all_reduce(counts)
        solved, cells_ok, cells, nfe, batches, n, puzzle_calls = counts.tolist()
        rows.append({"strategy": strategy, "n": int(n), "solved": int(solved),
                     "puzzle_acc": solved / max(n, 1), "puzzle_acc_ci95": list(wilson_interval(int(solved), int(n))),
                     "cell_acc": cells_ok / max(cells, 1), "nfe": nfe / max(batches, 1),
                     "calls_per_puzzle": puzzle_calls / max(n, 1), "seconds": time.perf_counter() - t0})
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
    head = "| strategy | " + " | ".join(f"{s}: puzzles solved | {s}: cells right | {s}: model calls | "
                                         f"{s}: calls per puzzle" for s in splits) + " |"
    sep = "|---|" + "---|---|---|---|" * len(splits)
    lines = [head, sep]
    for st in strategies:
        cols = []
        for sp in splits:
            r = next((r for r in results[sp] if r["strategy"] == st), None)
            cols += (["-"] * 4 if r is None else
                     [f"{100 * r['puzzle_acc']:.2f}% ({r['solved']}/{r['n']})", f"{100 * r['cell_acc']:.2f}%",
                      f"{r['nfe']:.1f}", f"{r['calls_per_puzzle']:.1f}"])
        lines.append(f"| {st} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def schedule_label(schedule: dict) -> str:
    """'k=2', 'threshold=0.99' or 'steps=50' for a schedule {"k": 2} / {"threshold": 0.99} / {"steps": 50}."""
    ((name, value),) = schedule.items()
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def _strategies_of(sweep) -> list[str]:
    out = []
    for _, results in sweep:
        for rows in results.values():
            out += [r["strategy"] for r in rows if r["strategy"] not in out]
    return out


def _row(results, split, strategy):
    return next((r for r in results.get(split, []) if r["strategy"] == strategy), None)


def format_sweep(sweep: list[tuple[dict, dict[str, list[dict]]]]) -> str:
    """Markdown: per split, a row per schedule and a column per strategy, each cell 'accuracy [95% interval],
    calls per puzzle'."""
    strategies = _strategies_of(sweep)
    blocks = []
    for split in sweep[0][1]:
        lines = [f"| {split}: schedule | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
        for schedule, results in sweep:
            cells = []
            for st in strategies:
                r = _row(results, split, st)
                lo, hi = r["puzzle_acc_ci95"] if r else (0, 0)
                cells.append("-" if r is None else f"{100 * r['puzzle_acc']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}], "
                                                   f"{r['calls_per_puzzle']:.1f} calls")
            lines.append(f"| {schedule_label(schedule)} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def fewest_calls(sweep: list[tuple[dict, dict[str, list[dict]]]], split: str) -> dict | None:
    """The cheapest schedule at one cell per call's accuracy, on `split`.

    The reference is the best strategy at k=1 (None when the sweep has no k=1). Returns {"reference": (schedule,
    row), "within_ci": (schedule, row), "as_many": (schedule, row)}: over every strategy and schedule, the
    fewest calls per puzzle whose accuracy is inside (or above) the reference's 95% Wilson interval, and whose
    puzzles solved are at least the reference's."""
    refs = [(sch, r) for sch, res in sweep if sch == {"k": 1} for r in res.get(split, [])]
    if not refs:
        return None
    ref = max(refs, key=lambda sr: sr[1]["solved"])
    candidates = [(sch, r) for sch, res in sweep for r in res.get(split, [])]
    low = ref[1]["puzzle_acc_ci95"][0]

    def cheapest(ok):
        return min((c for c in candidates if ok(c[1])), key=lambda c: (c[1]["calls_per_puzzle"], -c[1]["solved"]))
    return {"reference": ref, "within_ci": cheapest(lambda r: r["puzzle_acc"] >= low),
            "as_many": cheapest(lambda r: r["solved"] >= ref[1]["solved"])}


def describe_fewest(found: dict, split: str) -> str:
    """One line per finding of `fewest_calls`."""
    def say(pair):
        sch, r = pair
        lo, hi = r["puzzle_acc_ci95"]
        return (f"{r['strategy']} {schedule_label(sch)}: {100 * r['puzzle_acc']:.1f}% [{100 * lo:.1f}, "
                f"{100 * hi:.1f}] at {r['calls_per_puzzle']:.1f} calls per puzzle")
    return (f"{split}: one cell per call, best: {say(found['reference'])}\n"
            f"{split}: fewest calls within its 95% interval: {say(found['within_ci'])}\n"
            f"{split}: fewest calls solving as many: {say(found['as_many'])}")


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


def plot_calls(sweep: list[tuple[dict, dict[str, list[dict]]]], path) -> None:
    """Puzzle accuracy against model calls per puzzle (log scale), one panel per split and one line per
    strategy and schedule kind (k cells per call: solid; threshold: dashed), each threshold point labelled
    with its threshold and each k once (needs matplotlib)."""
    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastmdm[plot]'") from e
    splits = list(sweep[0][1])
    strategies = _strategies_of(sweep)
    kinds = [kind for kind in ("k", "threshold", "steps") if any(kind in sch for sch, _ in sweep)]
    styles = {"k": ("-", "o"), "threshold": ("--", "s"), "steps": (":", "^")}
    names = {"k": "k per call", "threshold": "threshold", "steps": "steps"}
    fig, axes = plt.subplots(1, len(splits), figsize=(6.4 * len(splits), 4.6), squeeze=False)
    for ax, split in zip(axes[0], splits):
        for ci, st in enumerate(strategies):
            color = f"C{ci}"
            for kind in kinds:
                pts = sorted(((r["calls_per_puzzle"], 100 * r["puzzle_acc"], sch[kind])
                              for sch, res in sweep if kind in sch
                              for r in [_row(res, split, st)] if r is not None))
                if not pts:
                    continue
                line, marker = styles[kind]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], line, marker=marker, color=color, markersize=4,
                        label=f"{st}, {names[kind]}")
                for x, y, v in pts:
                    if kind == "k":  # the same calls for every strategy: one faint line, labelled at the top
                        if ci == 0:
                            ax.axvline(x, color="0.85", lw=0.8, zorder=0)
                            ax.annotate(f"k={v}", (x, 0.98), xycoords=("data", "axes fraction"), ha="center",
                                        va="top", fontsize=7, color="0.4")
                    else:
                        ax.annotate(f"{v:g}", (x, y), textcoords="offset points", fontsize=6, color=color,
                                    xytext=(4, 3) if ci % 2 == 0 else (4, -9))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        lo = min(r["calls_per_puzzle"] for _, res in sweep for r in res[split])
        hi = max(r["calls_per_puzzle"] for _, res in sweep for r in res[split])
        ticks = [t for t in (1, 2, 4, 8, 16, 32, 64, 128) if lo / 1.5 <= t <= hi * 1.5]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("model calls per puzzle (log scale)")
        ax.set_ylabel("puzzles solved (%)")
        ax.set_ylim(0, 100)
        ax.set_title(split)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate_arm(model, puzzles, solutions, *, batch_size=256, progress=False, rank=0, world_size=1,
                 cells_given: bool = False) -> dict:
    """`evaluate`'s row for an autoregressive baseline (`fastmdm.sudoku.arm`). `cells_given`: the blanks are
    written in the ARM's training order (`arm.fill_orders`) and the model gives only the digits, a diagnostic
    of what it writes apart from where (row "arm-<order>, cells given")."""
    from fastmdm.sudoku.arm import calls_per_blank, fill_orders  # noqa: PLC0415
    puzzles, solutions = puzzles[rank::world_size], solutions[rank::world_size]
    order = arm_order_of(model)
    t0 = time.perf_counter()
    ranks = fill_orders(puzzles.cpu().numpy(), solutions.cpu().numpy(), order) if cells_given else None
    ans, valid, nfe = answer_arm(model, puzzles, batch_size=batch_size, progress=progress, desc="eval", ranks=ranks)
    ans = torch.as_tensor(ans).long()
    blank = puzzles == MASK_ID
    per_blank = calls_per_blank(order, cells_given)
    batches = math.ceil(len(puzzles) / batch_size)
    counts = torch.tensor([float(valid.sum()), float(((ans == solutions) & blank).sum()), float(blank.sum()),
                           nfe * batches, batches, puzzles.shape[0], per_blank * float(blank.sum())],
                          dtype=torch.float64)
    if world_size > 1:
        import torch.distributed as dist  # noqa: PLC0415
        dist.all_reduce(counts)
    solved, cells_ok, cells, nfe, batches, n, puzzle_calls = counts.tolist()
    return {"strategy": f"arm-{order}" + (", cells given" if cells_given else ""), "n": int(n), "solved": int(solved),
            "puzzle_acc": solved / max(n, 1), "puzzle_acc_ci95": wilson_interval(int(solved), int(n)),
            "cell_acc": cells_ok / max(cells, 1), "nfe": nfe / max(batches, 1),
            "calls_per_puzzle": puzzle_calls / max(n, 1), "seconds": time.perf_counter() - t0}
