"""Where a Sudoku MDM's errors live: the subproblems (partial boards) it meets, each blank classed by the
easiest technique the engine needs to place it (`fastmdm.sudoku.engine.cell_hardness`).

Three measurements on test puzzles (`analyze`):

- **subproblems**: random masks of each puzzle's blanks at masking rates t (clues stay visible, each blank is
  masked with probability t and the others show the solution), one model call; for every masked cell its
  class on that board, whether the model's most likely digit (the mask token excluded, as in decoding) is the
  solution, and its cross-entropy over the whole vocabulary (the training loss's term). Per class, and per
  (rate, class). These are the subproblems training covers.
- **picks**: decode with each order, one cell per model call at temperature 0; at every step the class of the
  chosen cell on the board as it stood before that step, and whether the digit written is right. Per class,
  over all picks and over the picks made while every earlier fill of the puzzle was still right ("clean"). A
  board with a wrong digit can become contradictory (class "contradictory").
- **first failures**: for each failed puzzle, the step and the class of its first wrong cell.

Autoregressive baselines (`analyze(arms=...)`) get the same pick and first-failure tables, decoded in their own
order, and their own subproblem table (`arm_subproblem_errors`): teacher forced, as they train, on the boards
their order presents (the puzzle plus the blanks written before each step), per class and per share of blanks
still open. The hook for other models: a `Decoder` is any function from puzzles to (answers, fill order);
`analyze` takes extra ones in `decoders` and reports the pick and first-failure tables for them. `pick_table`
works on any (puzzles, solutions, answers, order) directly.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from fastmdm.sudoku import engine
from fastmdm.sudoku.data import MASK_ID

#: the orders analysed by default
DEFAULT_ORDERS = ("random", "confidence", "margin", "entropy")
#: masking rates of the subproblem table
DEFAULT_RATES = tuple(round(0.1 * i, 1) for i in range(1, 11))
#: class labels in table order: the seven techniques, "beyond", then "contradictory" (engine code -2)
CLASS_LABELS: tuple[str, ...] = engine.HARDNESS_CLASSES + ("contradictory",)
_CONTRA = len(CLASS_LABELS) - 1

#: puzzles [n, 81] int8 -> (answers int8 [n, 81], order [n, 81]: the step (from 0) at which each blank was
#: filled, -1 for clues). Several cells may share a step.
Decoder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _class_index(h: np.ndarray) -> np.ndarray:
    """Engine hardness codes (0-7, -2) as indices into CLASS_LABELS."""
    h = np.asarray(h, np.int64)
    if (h == -1).any():
        raise ValueError("a filled cell has no hardness class")
    return np.where(h == engine.CONTRADICTORY, _CONTRA, h)


def _per_class(cls: np.ndarray, wrong: np.ndarray, loss: np.ndarray | None = None) -> list[dict]:
    """One row per class: cells, share of all cells, errors, error rate (None without cells), mean loss."""
    total = max(len(cls), 1)
    rows = []
    for i, name in enumerate(CLASS_LABELS):
        sel = cls == i
        n = int(sel.sum())
        row = {"class": name, "cells": n, "share": n / total, "errors": int(wrong[sel].sum()),
               "error_rate": float(wrong[sel].mean()) if n else None}
        if loss is not None:
            row["mean_loss"] = float(loss[sel].mean()) if n else None
        rows.append(row)
    return rows


def _totals(wrong: np.ndarray, loss: np.ndarray | None = None) -> dict:
    out = {"cells": int(len(wrong)), "errors": int(wrong.sum()),
           "error_rate": float(wrong.mean()) if len(wrong) else None}
    if loss is not None:
        out["mean_loss"] = float(loss.mean()) if len(loss) else None
    return out


def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# subproblems: random masks, one forward
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def subproblem_errors(model, puzzles, solutions, *, rates: Sequence[float] = DEFAULT_RATES, seed: int = 0,
                      batch_size: int = 256, threads: int | None = None, bar=None) -> dict:
    """Error rate and mean loss per hardness class of the model's one-call predictions on random masks of the
    puzzles' blanks (see the module docstring): {"rates", "total", "per_class", "per_rate": [{"rate", "total",
    "per_class"}]}. Mask draws depend only on (seed, rate index, puzzle index)."""
    from fastmdm.engine import call_model  # noqa: PLC0415
    puzzles, solutions = np.asarray(puzzles, np.int8), np.asarray(solutions, np.int8)
    dev = _device(model)
    all_cls, all_wrong, all_loss, per_rate = [], [], [], []
    for ri, t in enumerate(rates):
        rng = np.random.default_rng([seed, ri])
        masked = (puzzles == 0) & (rng.random(puzzles.shape) < t)
        boards = np.where(masked, 0, solutions).astype(np.int8)
        hard = engine.cell_hardness(boards, threads)
        cls, wrong, loss = [], [], []
        for i in range(0, len(boards), batch_size):
            m = masked[i:i + batch_size]
            logits = call_model(model, torch.as_tensor(boards[i:i + batch_size]).long().to(dev)).float().cpu()
            if bar is not None:
                bar.update(1)
            sel = torch.as_tensor(m)
            z = logits[sel]  # [cells, V]
            target = torch.as_tensor(solutions[i:i + batch_size][m]).long()
            loss.append(torch.nn.functional.cross_entropy(z, target, reduction="none").numpy())
            z[:, MASK_ID] = -math.inf
            wrong.append((z.argmax(-1) != target).numpy())
            cls.append(_class_index(hard[i:i + batch_size][m]))
        cls, wrong, loss = (np.concatenate(v) if v else np.zeros(0) for v in (cls, wrong, loss))
        wrong = wrong.astype(bool)
        per_rate.append({"rate": float(t), "total": _totals(wrong, loss), "per_class": _per_class(cls, wrong, loss)})
        all_cls.append(cls)
        all_wrong.append(wrong)
        all_loss.append(loss)
    cls, wrong, loss = (np.concatenate(v) if v else np.zeros(0) for v in (all_cls, all_wrong, all_loss))
    wrong = wrong.astype(bool)
    return {"rates": [float(t) for t in rates], "total": _totals(wrong, loss),
            "per_class": _per_class(cls, wrong, loss), "per_rate": per_rate}


def _rate_bins(rates: Sequence[float], value: np.ndarray) -> np.ndarray:
    """Index of the smallest rate >= value (the last rate for values above every rate)."""
    return np.minimum(np.searchsorted(np.asarray(rates), value - 1e-9), len(rates) - 1)


@torch.no_grad()
def arm_subproblem_errors(model, puzzles, solutions, *, rates: Sequence[float] = DEFAULT_RATES,
                          batch_size: int = 256, threads: int | None = None, bar=None) -> dict:
    """The subproblem table of an autoregressive baseline (`fastmdm.sudoku.arm`): the subproblems its order
    presents, teacher forced as in training, one call per batch. The board of step t is the puzzle plus the
    blanks its order writes before t, all right; per step: the class of the cell written on that board, whether
    the model's most likely digit (1-9, as decoding picks) is the solution, and its cross-entropy over the
    vocabulary (the training loss's term). A step's rate is the share of the puzzle's blanks still open before
    it, binned up to the next of `rates` (the MDM's masking rate on the same scale).

    Returns subproblem_errors' dict plus "order" and, for a solver-order ARM (which also chooses where to
    write), "cells": how often its most likely open blank is the grader's next cell ("error_rate": it is not),
    per class of that cell."""
    from fastmdm.sudoku import arm  # noqa: PLC0415
    order = arm.arm_order_of(model)
    rates = sorted(float(x) for x in rates)   # bins need them ascending
    puzzles, solutions = np.asarray(puzzles, np.int8), np.asarray(solutions, np.int8)
    if puzzles.ndim != 2 or puzzles.shape[1] != arm.CELLS or puzzles.shape != solutions.shape:
        raise ValueError(f"puzzles and solutions: must both be [N, 81], got {puzzles.shape} and {solutions.shape}")
    ranks = arm.fill_orders(puzzles, solutions, order, threads=threads)
    rows, cells, steps, boards = pick_boards(puzzles, solutions, ranks)   # sorted by (row, step)
    cls = _class_index(engine.cell_hardness(boards, threads)[np.arange(len(rows)), cells])
    blanks = (puzzles == 0).sum(1)
    rate_of = _rate_bins(rates, (blanks[rows] - steps) / np.maximum(blanks[rows], 1))
    wrong, cell_wrong, loss = np.zeros(len(rows), bool), np.zeros(len(rows), bool), np.zeros(len(rows))
    first = np.searchsorted(rows, np.arange(len(puzzles) + 1))         # puzzle i's steps: first[i]:first[i + 1]
    dev = _device(model)
    for a in range(0, len(puzzles), batch_size):
        b = min(a + batch_size, len(puzzles))
        seqs = arm.sequences(*(torch.as_tensor(x[a:b]).long() for x in (puzzles, solutions, ranks))).to(dev)
        logits, targets, ce, _, _ = (x.cpu() for x in arm.next_token_ce(model, seqs))  # j predicts token j + 1
        if bar is not None:
            bar.update(1)
        lo, hi = first[a], first[b]
        r, t = torch.as_tensor(rows[lo:hi] - a).long(), torch.as_tensor(steps[lo:hi]).long()
        j = arm.CELLS + 1 + 2 * t                      # the digit of step t follows the separator and its cell
        loss[lo:hi] = ce[r, j].numpy()
        wrong[lo:hi] = (logits[r, j, 1:10].argmax(-1) + 1 != targets[r, j]).numpy()
        if order == "solver":
            zc = logits[r, arm.CELLS + 2 * t, arm.CELL0:arm.CELL0 + arm.CELLS]
            zc = zc.masked_fill(torch.as_tensor(boards[lo:hi] != 0), -math.inf)
            cell_wrong[lo:hi] = (zc.argmax(-1) != torch.as_tensor(cells[lo:hi])).numpy()
    per_rate = [{"rate": float(x), "total": _totals(wrong[rate_of == i], loss[rate_of == i]),
                 "per_class": _per_class(cls[rate_of == i], wrong[rate_of == i], loss[rate_of == i])}
                for i, x in enumerate(rates)]
    out = {"order": order, "rates": [float(x) for x in rates], "total": _totals(wrong, loss),
           "per_class": _per_class(cls, wrong, loss), "per_rate": per_rate}
    if order == "solver":
        out["cells"] = {"total": _totals(cell_wrong), "per_class": _per_class(cls, cell_wrong)}
    return out


# ----------------------------------------------------------------------------------------------
# picks of a decoder
# ----------------------------------------------------------------------------------------------
def pick_boards(puzzles, answers, order) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pick of a decode: (row [P], cell [P], step [P], board [P, 81]), the board as it stood before that
    pick's step (the puzzle plus the cells filled at earlier steps), picks sorted by (row, step, cell)."""
    puzzles, answers, order = np.asarray(puzzles, np.int8), np.asarray(answers, np.int8), np.asarray(order)
    rows, cells = np.nonzero(order >= 0)
    steps = order[rows, cells]
    idx = np.lexsort((cells, steps, rows))
    rows, cells, steps = rows[idx], cells[idx], steps[idx]
    before = (order[rows] >= 0) & (order[rows] < steps[:, None])
    boards = np.where(before, answers[rows], puzzles[rows]).astype(np.int8)
    return rows, cells, steps, boards


def pick_table(puzzles, solutions, answers, order, *, threads: int | None = None) -> dict:
    """What a decoder picked (see the module docstring), from the puzzles [n, 81], their solutions, the
    decoder's answers and its fill order (step per cell, -1 for clues; several cells may share a step).

    Returns {"puzzles", "solved", "picks", "first_failure"}. picks["all"] and picks["clean"] (the picks made
    while every earlier fill of the puzzle was right) hold "total" and "per_class" rows; picks["clean"]
    ["available"] is the mean class mix of the blanks on those boards (what a uniformly random pick would
    get); picks["after_error"] covers the other picks and their "share" of all.
    """
    puzzles, solutions = np.asarray(puzzles, np.int8), np.asarray(solutions, np.int8)
    answers, order = np.asarray(answers, np.int8), np.asarray(order, np.int64)
    if not (puzzles.shape == solutions.shape == answers.shape == order.shape) or puzzles.shape[1:] != (81,):
        raise ValueError(f"puzzles, solutions, answers and order must all be [n, 81]; got {puzzles.shape}, "
                         f"{solutions.shape}, {answers.shape} and {order.shape}")
    if ((order >= 0) != (puzzles == 0)).any():
        raise ValueError("order: must give a step (>= 0) for every blank and -1 for every clue")
    n = len(puzzles)
    rows, cells, steps, boards = pick_boards(puzzles, answers, order)
    hard = engine.cell_hardness(boards, threads)
    cls = _class_index(hard[np.arange(len(rows)), cells])
    wrong = answers[rows, cells] != solutions[rows, cells]
    big = np.iinfo(np.int64).max
    first = np.full(n, big)
    np.minimum.at(first, rows[wrong], steps[wrong])
    clean = steps <= first[rows]  # the board before the step holds right digits only
    failed = first < big
    blanks = (puzzles == 0).sum(1)
    # the first wrong pick of each failed puzzle (the lowest cell when several share the step)
    firsts = np.flatnonzero(wrong & (steps == first[rows]))
    firsts = firsts[np.unique(rows[firsts], return_index=True)[1]]
    f_rows, f_steps, f_cls = rows[firsts], steps[firsts], cls[firsts]
    rel = f_steps / np.maximum(blanks[f_rows], 1)
    hist_edges = np.linspace(0.0, 1.0, 11)
    first_failure = {
        "failed": int(failed.sum()),
        "mean_step": float(f_steps.mean()) if len(f_steps) else None,
        "median_step": float(np.median(f_steps)) if len(f_steps) else None,
        "mean_blanks": float(blanks[f_rows].mean()) if len(f_rows) else None,
        "mean_fraction_done": float(rel.mean()) if len(rel) else None,
        "fraction_done_histogram": {"edges": hist_edges.tolist(),
                                    "counts": np.histogram(rel, hist_edges)[0].tolist()},
        "steps": f_steps.tolist(),
        "per_class": [{"class": name, "count": int((f_cls == i).sum()),
                       "share": float((f_cls == i).mean()) if len(f_cls) else None}
                      for i, name in enumerate(CLASS_LABELS)],
    }
    # the class mix of the blanks each clean pick chose from (what a uniformly random pick would get)
    blank = hard[clean] != -1
    mix = np.stack([((hard[clean] == (engine.CONTRADICTORY if i == _CONTRA else i)) & blank).sum(1)
                    for i in range(len(CLASS_LABELS))], 1) / np.maximum(blank.sum(1, keepdims=True), 1)
    available = mix.mean(0) if len(mix) else np.zeros(len(CLASS_LABELS))
    picks = {"all": {"total": _totals(wrong), "per_class": _per_class(cls, wrong)},
             "clean": {"total": _totals(wrong[clean]), "per_class": _per_class(cls[clean], wrong[clean]),
                       "available": {name: float(v) for name, v in zip(CLASS_LABELS, available)}},
             "after_error": {**_totals(wrong[~clean]), "share": float((~clean).mean()) if len(clean) else None}}
    return {"puzzles": n, "solved": int(n - failed.sum()), "picks": picks, "first_failure": first_failure}


def mdm_decoder(model, strategy: str, *, seed: int = 0, batch_size: int = 256, bar=None) -> Decoder:
    """The MDM decoding one cell per model call with `strategy` at temperature 0, as a `Decoder`; `bar` (a
    tqdm bar) moves once per model call."""
    from fastmdm.sudoku.evaluate import CallTicker, decode_puzzles  # noqa: PLC0415

    def decode(puzzles):
        dev = _device(model)
        g = torch.Generator(device=dev).manual_seed(seed)
        m = model if bar is None else CallTicker(model, bar)
        answers, orders = [], []
        for i in range(0, len(puzzles), batch_size):
            tr = decode_puzzles(m, torch.as_tensor(np.asarray(puzzles[i:i + batch_size])), strategy=strategy, k=1,
                                generator=g, return_trace=True)
            answers.append(tr.tokens.cpu().to(torch.int8).numpy())
            orders.append(tr.order.cpu().numpy())
        if not answers:
            return np.zeros((0, 81), np.int8), np.zeros((0, 81), np.int64)
        return np.concatenate(answers), np.concatenate(orders)
    return decode


def model_calls(n: int, blanks_max: Sequence[int], *, rates: Sequence[float], orders: int, batch_size: int) -> int:
    """Model calls of `analyze` on n puzzles: one per batch and rate, plus one per batch, order and step."""
    batches = math.ceil(n / batch_size)
    return batches * len(rates) + orders * sum(int(b) for b in blanks_max)


@torch.no_grad()
def analyze(model, puzzles, solutions, *, orders: Sequence[str] = DEFAULT_ORDERS,
            rates: Sequence[float] = DEFAULT_RATES, seed: int = 0, batch_size: int = 256,
            threads: int | None = None, decoders: Mapping[str, Decoder] | None = None,
            arms: Mapping[str, torch.nn.Module] | None = None, bar=None) -> dict:
    """All three measurements on one set of puzzles: {"n", "subproblems", "orders": {name: pick_table}}, and
    with `arms` also "arm_subproblems": {name: arm_subproblem_errors}.

    orders: the MDM's decoding strategies (one cell per call, temperature 0); decoders: further named
    `Decoder`s (other models) analysed the same way after them; arms: named autoregressive baselines, each
    decoded in its own order (a pick table after the decoders) and teacher forced on the subproblems its order
    presents; threads: the engine's threads for the hardness classes (None = all cores); bar: a tqdm bar moved
    once per model call."""
    puzzles, solutions = np.asarray(puzzles, np.int8), np.asarray(solutions, np.int8)
    if puzzles.ndim != 2 or puzzles.shape[1] != 81 or puzzles.shape != solutions.shape:
        raise ValueError(f"puzzles and solutions: must both be [N, 81], got {puzzles.shape} and {solutions.shape}")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        out = {"n": int(len(puzzles)),
               "subproblems": subproblem_errors(model, puzzles, solutions, rates=rates, seed=seed,
                                                batch_size=batch_size, threads=threads, bar=bar),
               "orders": {}}
        named = {s: mdm_decoder(model, s, seed=seed * 1000 + i * 7919, batch_size=batch_size, bar=bar)
                 for i, s in enumerate(orders)}
        named.update(decoders or {})
        if arms:
            from fastmdm.sudoku.arm import arm_decoder  # noqa: PLC0415
            named.update({name: arm_decoder(m, batch_size=batch_size, bar=bar) for name, m in arms.items()})
            out["arm_subproblems"] = {name: arm_subproblem_errors(m, puzzles, solutions, rates=rates,
                                                                  batch_size=batch_size, threads=threads, bar=bar)
                                      for name, m in arms.items()}
        for name, dec in named.items():
            answers, order = dec(puzzles)
            out["orders"][name] = pick_table(puzzles, solutions, answers, order, threads=threads)
    finally:
        if was_training:
            model.train()
    return out


# ----------------------------------------------------------------------------------------------
# reports
# ----------------------------------------------------------------------------------------------
def environment(command: str, device: str = "cpu", threads: int | None = None) -> dict:
    """Where and how the analysis ran: command, date, CPU/GPU, threads, versions."""
    import fastmdm  # noqa: PLC0415
    from fastmdm import _native  # noqa: PLC0415
    env = {"command": command, "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "fastmdm": fastmdm.__version__, "native_compiler": _native.compiler(), "device": device,
           "torch_threads": torch.get_num_threads(), "engine_threads": threads}
    from fastmdm.adapters import cpu_model  # noqa: PLC0415
    env["cpu"] = f"{cpu_model()}, {os.cpu_count()} logical cores"
    if str(device).startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _short(name: str) -> str:
    return {"naked_single": "NS", "hidden_single": "HS", "naked_pair": "NP", "naked_triple": "NT",
            "locked_candidate": "LC", "xy_wing": "XY", "unique_rectangle": "UR", "beyond": "beyond",
            "contradictory": "contra."}[name]


def _ordered(names, preferred) -> list:
    """`names` with those in `preferred` first, in its order (JSON round trips sort keys)."""
    names = list(names)
    return [n for n in preferred if n in names] + [n for n in names if n not in preferred]


def _splits(report: dict) -> list[str]:
    return _ordered(report["splits"], report.get("settings", {}).get("splits", []))


def _orders(report: dict, split: str) -> dict:
    o = report["splits"][split]["orders"]
    return {name: o[name] for name in _ordered(o, report.get("settings", {}).get("orders", []))}


def _count(n: int) -> str:
    return str(n) if n < 1000 else f"{n / 1000:.0f}k"


def _rate_table(sub: dict) -> list[str]:
    """A subproblem table's error rate by rate and class (cells in brackets), classes without cells left out."""
    used = [i for i, r in enumerate(sub["per_class"]) if r["cells"]]
    lines = ["| t | all | " + " | ".join(_short(CLASS_LABELS[i]) for i in used) + " |",
             "|---|---|" + "---|" * len(used)]
    for pr in sub["per_rate"]:
        if not pr["total"]["cells"]:
            continue
        cols = [f"{_pct(pr['per_class'][i]['error_rate'])} ({pr['per_class'][i]['cells']})"
                if pr["per_class"][i]["cells"] else "-" for i in used]
        lines.append(f"| {pr['rate']:g} | {_pct(pr['total']['error_rate'])} | " + " | ".join(cols) + " |")
    return lines


def _arm_subproblem_lines(arms: dict, mdm: dict) -> list[str]:
    """The ARMs' subproblem tables beside the MDM's (markdown lines; none without ARMs)."""
    if not arms:
        return []
    used = [i for i in range(len(CLASS_LABELS))
            if mdm["per_class"][i]["cells"] or any(a["per_class"][i]["cells"] for a in arms.values())]
    lines = ["", "**The autoregressive baselines' subproblems**, teacher forced as they train: the board of each "
             "step is the puzzle plus the blanks the ARM's order writes before it, all right, and the model gives "
             "the next digit (most likely of 1-9) in one call. Error rate by class, the share of the cells or steps "
             "in brackets, the MDM's random masks above for comparison:", "",
             "| model | all | mean loss | " + " | ".join(_short(CLASS_LABELS[i]) for i in used) + " |",
             "|---|---|---|" + "---|" * len(used)]
    rows = [("MDM, random masks", mdm)] + [(f"{name}, its order", a) for name, a in arms.items()]
    for label, sub in rows:
        cols = [f"{_pct(sub['per_class'][i]['error_rate'])} ({_pct(sub['per_class'][i]['share'])})"
                if sub["per_class"][i]["cells"] else "-" for i in used]
        lines.append(f"| {label} | {_pct(sub['total']['error_rate'])} | {_num(sub['total']['mean_loss'])} | "
                     + " | ".join(cols) + " |")
    for name, a in arms.items():
        if "cells" in a:
            c = a["cells"]
            by = ", ".join(f"{_short(r['class'])} {_pct(1 - r['error_rate'])}" for r in c["per_class"] if r["cells"])
            lines += ["", f"{name} also chooses where to write: its most likely open blank is the grader's next cell "
                      f"at {_pct(1 - c['total']['error_rate'])} of the steps (by the class of the grader's cell: "
                      f"{by})."]
        lines += ["", f"{name}: error rate by the share t of the puzzle's blanks still open before the step (binned up "
                  f"to the next tenth) and class:", ""]
        lines += _rate_table(a)
    return lines


def format_markdown(report: dict) -> str:
    """The report as markdown: settings, then per split the subproblem, pick and first-failure tables."""
    env, st = report["environment"], report["settings"]
    abbrev = ", ".join(f"{_short(c)} = {c.replace('_', ' ')}" for c in CLASS_LABELS[:7])
    lines = ["# Sudoku MDM: where its errors live, by hardness class", "",
             f"{env['date_utc']}, {env['cpu']}, torch {env['torch']} ({env['torch_threads']} thread"
             f"{'s' if env['torch_threads'] != 1 else ''}), "
             f"{st['precision']}, checkpoint: {st['checkpoint']}, seed {st['seed']}"
             + (f", {st['seconds']:.0f} s wall" if st.get("seconds") is not None else "") + ". Command:", "",
             f"    {env['command']}", "",
             "A blank's class is the easiest technique the engine's grader needs to place it, propagating from the "
             "board as it stands (`fastmdm.sudoku.engine.cell_hardness`): " + abbrev + "; beyond = not placed "
             "by the seven; contra. = the board's candidates became contradictory (after a wrong fill). Right fills "
             "can rarely make a cell harder: a unique rectangle needs four blank corners, so a standard puzzle's "
             "board can have a cell beyond the seven once a corner is filled.", ""]
    classes = CLASS_LABELS
    for split in _splits(report):
        res = report["splits"][split]
        sub = res["subproblems"]
        rates = ", ".join(f"{r:g}" for r in sub["rates"])
        lines += [f"## {split} ({res['n']} test puzzles)", "",
                  f"**Subproblems** (each blank masked with probability t = {rates}, "
                  f"the rest visible, one model call): {sub['total']['cells']:,} masked cells, "
                  f"error {_pct(sub['total']['error_rate'])}, mean loss {_num(sub['total']['mean_loss'])} nats.", "",
                  "| class | cells | share | error rate | mean loss (nats) |", "|---|---|---|---|---|"]
        for r in sub["per_class"]:
            if r["cells"]:
                lines.append(f"| {r['class']} | {r['cells']:,} | {_pct(r['share'])} | {_pct(r['error_rate'])} | "
                             f"{_num(r['mean_loss'])} |")
        lines += ["", "Error rate by masking rate t and class (cells in the class at that t in brackets):", ""]
        lines += _rate_table(sub)
        lines += _arm_subproblem_lines(res.get("arm_subproblems") or {}, sub)
        orders = _orders(report, split)
        used = [i for i in range(len(classes)) if any(o["picks"]["clean"]["per_class"][i]["cells"]
                                                      for o in orders.values())]
        head = " | ".join(_short(classes[i]) for i in used)
        lines += ["", "**Picks** (one cell per model call, temperature 0), as a share of each order's picks: by the "
                  "class of the chosen cell on the board before the step while every earlier fill was right, and "
                  "the picks made after a wrong fill. In italics below each order: what a uniformly random choice "
                  "among the blanks of the same right boards would have picked.", "",
                  f"| order | solved | {head} | after a wrong fill |", "|---|---|" + "---|" * (len(used) + 1)]
        for name, o in orders.items():
            total = max(o["picks"]["all"]["total"]["cells"], 1)
            pc, av = o["picks"]["clean"]["per_class"], o["picks"]["clean"]["available"]
            lines.append(f"| {name} | {_pct(o['solved'] / max(o['puzzles'], 1))} | "
                         + " | ".join(_pct(pc[i]["cells"] / total) for i in used)
                         + f" | {_pct(o['picks']['after_error']['share'])} |")
            right = o["picks"]["clean"]["total"]["cells"] / total
            lines.append("| *random pick* | | " + " | ".join(f"*{_pct(av[classes[i]] * right)}*" for i in used)
                         + " | |")
        lines += ["", "Error rate of the picks: all, on right boards by class, and after a wrong fill:", "",
                  f"| order | all | right board | {head} | after a wrong fill |",
                  "|---|---|---|" + "---|" * (len(used) + 1)]
        for name, o in orders.items():
            pa, pk, pe = o["picks"]["all"], o["picks"]["clean"], o["picks"]["after_error"]
            cols = [_pct(pk["per_class"][i]["error_rate"]) for i in used]
            lines.append(f"| {name} | {_pct(pa['total']['error_rate'])} | {_pct(pk['total']['error_rate'])} | "
                         + " | ".join(cols) + f" | {_pct(pe['error_rate'])} |")
        used_f = [i for i in range(len(classes)) if any(o["first_failure"]["per_class"][i]["count"]
                                                        for o in orders.values())]
        lines += ["", "**First failures**: per failed puzzle, the step of its first wrong cell and that cell's class "
                  "(on a board still right).", "",
                  "| order | failed | mean step (of mean blanks) | mean fraction done | "
                  + " | ".join(_short(classes[i]) for i in used_f) + " |",
                  "|---|---|---|---|" + "---|" * len(used_f)]
        for name, o in orders.items():
            ff = o["first_failure"]
            cols = [str(ff["per_class"][i]["count"]) for i in used_f]
            lines.append(f"| {name} | {ff['failed']} | {_num(ff['mean_step'], 1)} ({_num(ff['mean_blanks'], 1)}) | "
                         f"{_pct(ff['mean_fraction_done'])} | " + " | ".join(cols) + " |")
        lines.append("")
    if report.get("figure"):
        lines += [f"![picks and errors by hardness class]({report['figure']})", ""]
    return "\n".join(lines)


def plot(report: dict, path) -> None:
    """Left: each order's picks by class (stacked, per split); right: the one-call error rate per class on
    the random-mask subproblems, per split (needs matplotlib)."""
    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("the figure needs matplotlib: pip install 'fastmdm[plot]' (or pass --no-plot)") from e
    splits = _splits(report)
    orders = list(_orders(report, splits[0]))
    colors = [plt.get_cmap("viridis")(i / 7) for i in range(8)] + [(0.6, 0.6, 0.6, 1.0)]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1.4, 1]})
    w = 0.8 / len(splits)
    xs, labels = [], []
    for j, sp in enumerate(splits):
        for i, name in enumerate(orders):
            x = i + j * w
            o = report["splits"][sp]["orders"][name]
            total = max(o["picks"]["all"]["total"]["cells"], 1)
            shares = [100 * r["cells"] / total for r in o["picks"]["clean"]["per_class"][:_CONTRA]]
            shares.append(100 * (o["picks"]["after_error"]["share"] or 0.0))
            bottom = 0.0
            for c, share in enumerate(shares):
                label = "after a wrong fill" if c == _CONTRA else CLASS_LABELS[c].replace("_", " ")
                ax.bar(x, share, w * 0.95, bottom=bottom, color=colors[c], label=label if i == 0 and j == 0 else None)
                bottom += share
            ax.text(x, 101, f"{100 * o['solved'] / max(o['puzzles'], 1):.0f}%", ha="center", fontsize=7)
            xs.append(x)
            labels.append(f"{name}\n{sp}" if len(name) < 9 else f"{name[:4]}.\n{sp}")
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylim(0, 108)
    ax.set_ylabel("picks (%): class of the chosen cell, board still right")
    ax.set_title("What each order fills next (number on top: puzzles solved)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(1.0, 0.0), frameon=False)
    wb = 0.8 / len(splits)
    top = 0.0
    for j, sp in enumerate(splits):
        pc = report["splits"][sp]["subproblems"]["per_class"]
        idx = [c for c, r in enumerate(pc) if r["cells"]]
        bars = bx.bar([c + j * wb for c in idx], [100 * pc[c]["error_rate"] for c in idx], wb * 0.95, label=sp)
        top = max([top] + [100 * pc[c]["error_rate"] for c in idx])
        tags = [f"{100 * pc[c]['error_rate']:.0f}\n{_count(pc[c]['cells'])}" for c in idx]
        bx.bar_label(bars, labels=tags, fontsize=5.5)
    bx.set_xticks([c + wb * (len(splits) - 1) / 2 for c in range(8)],
                  [_short(c) for c in CLASS_LABELS[:8]], fontsize=8)
    bx.set_ylim(0, max(top, 1.0) * 1.15)
    bx.set_ylabel("error rate (%) of the model's digit")
    bx.set_title("One-call error per class, random masks of the blanks\n(on the bars: error %, cells)", fontsize=10)
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_report(report: dict, out_dir, name: str = "sudoku_analyze", figure: bool = True) -> dict[str, Path]:
    """Write `name`.json, `name`.md and (with `figure`) `name`.png into `out_dir`; returns the paths."""
    from fastmdm.checkpoint import atomic_write_json  # noqa: PLC0415
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md"}
    if figure:
        paths["png"] = out_dir / f"{name}.png"
        plot(report, paths["png"])
        report = {**report, "figure": paths["png"].name}
    atomic_write_json(paths["json"], report)
    tmp = paths["md"].with_name(paths["md"].name + ".tmp")
    tmp.write_text(format_markdown(report), encoding="utf-8")
    tmp.replace(paths["md"])
    return paths
