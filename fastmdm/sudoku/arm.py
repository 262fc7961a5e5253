"""Autoregressive (ARM) Sudoku baselines: the same `fastmdm.models.Transformer` body, causal, trained by
teacher forcing on the blanks written down in a fixed order.

A sequence is the puzzle, a separator, then one (cell, digit) pair per blank:

    [81 puzzle tokens (0 = blank, 1-9)] [SEP] [cell c1] [digit d1] [cell c2] [digit d2] ...

Cell c is token ``CELL0 + c``. The order of the pairs is the ARM's curriculum:
- ``rowmajor`` ("without ordering"): the blanks in reading order;
- ``solver`` ("with solver ordering", as in Shah et al. 2024): the order in which the native grader's human
  strategies fill the blanks (`fastmdm.sudoku.engine.grade_batch`, guessing from the solution where the seven
  strategies are stuck), so the model learns where to write next as well as what.

Positions: the 81 puzzle tokens get the row + column + box embeddings of their cells (as the MDM's do); the
separator and the pairs get a learned embedding per slot, and a cell token and the digit after it also get the
row + column + box embedding of the cell they write (`SudokuARMPositions.embed_named`), so the ARM sees the
grid's structure in what it writes as the MDM does (Shah et al. write a row and a column token for the same
reason). Teacher forcing predicts every token after the
separator (cells and digits) from the ones before it.

Decoding (`decode_arm`) writes one pair per blank, greedily: the cell is the row-major next blank (``rowmajor``)
or the model's most likely cell among the blanks not yet written (``solver``: the choice is restricted to
blanks, so a pair never rewrites a clue or a written cell), then the model's most likely digit 1-9. One model
call per written token that the model chooses: a ``rowmajor`` answer costs one call per blank, a ``solver``
answer two; each call computes only the new tokens (`AppendCache`, exact for a causal model). Clues are never
changed and every blank is written once.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastmdm.models import Transformer, TransformerConfig
from fastmdm.models.positions import register_positions
from fastmdm.sudoku.positions import CELLS, SudokuPositions, unit_vectors

ORDERS = ("rowmajor", "solver")
ARCHS = ("mdm", *(f"arm-{o}" for o in ORDERS))
CELL0 = 10                 # token of cell c is CELL0 + c
SEP = CELL0 + CELLS        # 91: ends the puzzle; also pads finished rows
VOCAB = SEP + 1
MAX_BLANKS = CELLS - 17    # a unique Sudoku has at least 17 clues
MAX_LEN = CELLS + 1 + 2 * MAX_BLANKS


class SudokuARMPositions(SudokuPositions):
    """Row + column + box embeddings for the 81 puzzle tokens, then a learned vector per later slot."""

    name = "sudoku-arm"

    def check_config(self, config):
        if config.max_len <= CELLS:
            raise ValueError(f"TransformerConfig.max_len: positions='sudoku-arm' needs max_len > 81, got "
                             f"{config.max_len}")

    def add_to(self, model, config):
        super().add_to(model, config)
        model.slot_emb = nn.Embedding(config.max_len - CELLS, config.d_model)

    def check_length(self, length, config):
        return None if length <= config.max_len else f"max_len={config.max_len}"

    def embed(self, model, start, end, device):
        units = unit_vectors(model)
        slots = model.slot_emb(torch.arange(max(end - CELLS, 0), device=device))
        return torch.cat([units, slots])[start:end]

    def embed_named(self, model, input_ids, start, end):
        """A cell token and the digit after it get the row + column + box vector of the cell they write."""
        lo = max(start - 1, 0)
        ids = input_ids[:, lo:end].long()
        pos = torch.arange(lo, end, device=ids.device)
        after_sep = pos > CELLS
        is_cell = (ids >= CELL0) & (ids < SEP) & after_sep
        prev_cell = torch.nn.functional.pad(is_cell[:, :-1], (1, 0))
        prev_ids = torch.nn.functional.pad(ids[:, :-1], (1, 0))
        is_digit = (ids >= 1) & (ids <= 9) & prev_cell & after_sep
        cell = torch.where(is_cell, ids - CELL0, torch.where(is_digit, prev_ids - CELL0, CELLS))
        units = unit_vectors(model)
        table = torch.cat([units, units.new_zeros(1, units.shape[1])])  # row CELLS: no cell named
        return table[cell[:, start - lo:]]


register_positions(SudokuARMPositions())


def arm_config(**body) -> TransformerConfig:
    """A causal Sudoku ARM's TransformerConfig; `body`: d_model, n_layers, n_heads, d_ff, ..."""
    return TransformerConfig(**{**body, "vocab_size": VOCAB, "mask_token_id": 0, "max_len": MAX_LEN,
                                "positions": "sudoku-arm", "causal": True})


def is_arm(model) -> bool:
    cfg = getattr(model, "config", None)
    return isinstance(cfg, TransformerConfig) and cfg.causal and cfg.positions == "sudoku-arm"


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"order: {order!r} is not one of {', '.join(ORDERS)}")
    return order


def fill_orders(puzzles: np.ndarray, solutions: np.ndarray, order: str, threads: int | None = None) -> np.ndarray:
    """The rank of each cell in the ARM's order, int16 [N, 81]: 0, 1, ... over the blanks, -1 for clues."""
    check_order(order)
    puzzles = np.asarray(puzzles, dtype=np.int8)
    blank = puzzles == 0
    if order == "rowmajor":
        key = np.broadcast_to(np.arange(CELLS), puzzles.shape)
    else:
        from fastmdm.sudoku.engine import grade_batch  # noqa: PLC0415  (the native engine, loaded on use)
        step = grade_batch(puzzles, np.asarray(solutions, dtype=np.int8), threads=threads)["order"].astype(np.int64)
        if ((step < 0) & blank).any():
            raise ValueError("solutions: the grader could not order every blank (a puzzle without a unique "
                             "solution, or solutions that do not solve it)")
        key = step * CELLS + np.arange(CELLS)  # ties (never expected) in reading order
    key = np.where(blank, key, np.iinfo(np.int64).max)
    rank = np.argsort(np.argsort(key, axis=1, kind="stable"), axis=1, kind="stable")
    return np.where(blank, rank, -1).astype(np.int16)


def sequences(puzzles: torch.Tensor, solutions: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Token sequences [B, 82 + 2 * most blanks] (SEP-padded) from puzzles, solutions and `fill_orders` ranks."""
    puzzles, solutions, ranks = puzzles.long(), solutions.long(), ranks.long()
    B = puzzles.shape[0]
    n = int((ranks >= 0).sum(1).max()) if B else 0
    # cell written at slot r of each row: scatter the cell index to its rank
    cells = torch.full((B, n + 1), -1, dtype=torch.long, device=puzzles.device)
    idx = torch.where(ranks >= 0, ranks, n).long()
    cells.scatter_(1, idx, torch.arange(CELLS, device=puzzles.device).expand(B, CELLS).contiguous())
    cells = cells[:, :n]
    written = cells >= 0
    digit = torch.gather(solutions, 1, cells.clamp(min=0))
    pairs = torch.stack([torch.where(written, CELL0 + cells, SEP), torch.where(written, digit, SEP)], 2)
    sep = torch.full((B, 1), SEP, dtype=torch.long, device=puzzles.device)
    return torch.cat([puzzles, sep, pairs.reshape(B, 2 * n)], 1)


def calls_per_blank(order: str, cells_given: bool = False) -> int:
    """Model calls `decode_arm` makes per blank: the digit, and the cell too where the model chooses it (solver
    order without given ranks)."""
    return 1 if check_order(order) == "rowmajor" or cells_given else 2


def next_token_ce(model, seqs: torch.Tensor):
    """Teacher forcing on `seqs`: (logits, targets, per-token cross-entropy, cell mask, digit mask), all [B, T - 1];
    targets[:, i] is token i + 1, and the masks mark the predicted cell and digit tokens (after the separator,
    padding excluded)."""
    logits = model(seqs[:, :-1]).float()
    targets = seqs[:, 1:]
    ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    slot = torch.arange(1, seqs.shape[1], device=seqs.device) - CELLS   # 0: the separator; cells at odd slots
    valid = (slot > 0) & (targets != SEP)                                # SEP also pads rows with fewer blanks
    return logits, targets, ce, valid & (slot % 2 == 1), valid & (slot % 2 == 0)


def arm_loss(model, seqs: torch.Tensor, cell_weight: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Teacher-forcing loss: cross-entropy of every cell and digit token after the separator, each predicted
    from the tokens before it (padding excluded), averaged with weight `cell_weight` on the cell tokens and 1
    on the digits (1: the plain mean over tokens; 0: the digits alone)."""
    _, _, ce, is_cell, is_digit = next_token_ce(model, seqs)
    weight = is_cell * torch.as_tensor(cell_weight, dtype=ce.dtype, device=ce.device) + is_digit
    return (ce * weight).sum() / weight.sum().clamp_min(1e-12)


@torch.no_grad()
def teacher_forced(model, puzzles, solutions, batch_size: int = 256) -> dict:
    """How well an ARM predicts the next token of its own training sequences (the puzzles' blanks in its order):
    {"digit_acc", "digit_ce", "cell_acc", "cell_ce"}, argmax accuracy and mean cross-entropy (nats) over the digit
    tokens and over the cell tokens (a row-major ARM's cells are given at decoding, so only its digits matter)."""
    puzzles, solutions = np.asarray(puzzles), np.asarray(solutions)
    ranks = fill_orders(puzzles, solutions, arm_order_of(model))
    dev = next(model.parameters()).device
    sums = {"digit": [0.0, 0.0, 0], "cell": [0.0, 0.0, 0]}
    for a in range(0, len(puzzles), batch_size):
        seqs = sequences(*(torch.as_tensor(x[a:a + batch_size]).long() for x in (puzzles, solutions, ranks))).to(dev)
        logits, targets, ce, is_cell, is_digit = next_token_ce(model, seqs)
        right = logits.argmax(-1) == targets
        for name, where in (("cell", is_cell), ("digit", is_digit)):
            sums[name][0] += float(right[where].sum())
            sums[name][1] += float(ce[where].sum())
            sums[name][2] += int(where.sum())
    out = {}
    for name, (hits, ce, n) in sums.items():
        out[f"{name}_acc"], out[f"{name}_ce"] = (hits / n, ce / n) if n else (None, None)
    return out


class ARMObjective(nn.Module):
    """model + loss in one forward (for DDP, as the MDM's objective); batches are (seqs,) or (seqs, cell
    weight)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, seqs, cell_weight=1.0):
        return arm_loss(self.model, seqs, cell_weight)


class AppendCache:
    """The exact key/value cache of a causal model over a growing sequence, in the protocol of
    `fastmdm.cache` (window, `refreshing`, `update`): the first call computes every position, each later one
    only the positions appended since the call before."""

    def __init__(self):
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.start, self.end, self.refreshing = 0, 0, True

    def begin(self, length: int) -> None:
        self.refreshing = self.end == 0
        self.start, self.end = (0 if self.refreshing else self.end), int(length)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        if not self.refreshing:
            k = torch.cat([self.keys[layer], k], 2)
            v = torch.cat([self.values[layer], v], 2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


def _last_logits(model, seqs, cache):
    cache.begin(seqs.shape[1])
    hidden = model.forward_hidden(seqs, cache=cache)[:, -1]
    return model.get_output_embeddings()(hidden).float()


@torch.no_grad()
def decode_arm(model, puzzles: torch.Tensor, order: str, *, on_call=None, return_order: bool = False,
               ranks: torch.Tensor | None = None):
    """(answers [B, 81], model calls) for puzzles [B, 81] (0 = blank), greedy; see the module docstring.
    `on_call()`: called after each model call (progress bars). `return_order`: also the step at which each
    cell was written [B, 81] (-1 for clues), as `fastmdm.engine.Trace.order` gives it for an MDM.
    `ranks` ([B, 81], `fill_orders`' format): write the blanks in this order instead of choosing them, the model
    giving only the digits (a diagnostic that separates where an ARM writes from what it writes)."""
    check_order(order)
    if not is_arm(model):
        raise ValueError("model: not a Sudoku ARM (a causal Transformer with positions='sudoku-arm'); MDMs decode "
                         "with fastmdm.sample")
    dev = next(model.parameters()).device
    grid = puzzles.long().to(dev).clone()
    B = grid.shape[0]
    rows = torch.arange(B, device=dev)
    todo = grid == 0
    left = todo.sum(1)
    seqs = torch.cat([grid, torch.full((B, 1), SEP, dtype=torch.long, device=dev)], 1)
    calls = 0
    cache = AppendCache()
    written_at = torch.full_like(grid, -1)
    if ranks is not None:
        ranks = torch.as_tensor(ranks, device=dev).long()
        slot = torch.arange(CELLS, device=dev)
        if ranks.shape != grid.shape or not torch.equal(ranks >= 0, todo) or not torch.equal(
                torch.where(todo, ranks, CELLS).sort(1).values, torch.where(slot < left[:, None], slot, CELLS)):
            raise ValueError("ranks: not an order of the puzzles' blanks (want 0 .. blanks - 1 on the blanks and "
                             "-1 on the clues, as fill_orders gives)")
        forced = torch.where(todo, ranks, CELLS).argsort(1)   # forced[:, t]: the cell written at step t
    for t in range(int(left.max()) if B else 0):
        active = left > 0
        if ranks is not None:
            cell = forced[:, t]  # rows with fewer blanks are inactive by now
        elif order == "rowmajor":
            cell = torch.where(todo, torch.arange(CELLS, device=dev), CELLS).argmin(1)  # first open blank
        else:
            logits = _last_logits(model, seqs, cache)[:, CELL0:CELL0 + CELLS]
            calls += 1
            if on_call:
                on_call()
            cell = logits.masked_fill(~todo, -torch.inf).argmax(1)
        seqs = torch.cat([seqs, torch.where(active, CELL0 + cell, SEP)[:, None]], 1)
        logits = _last_logits(model, seqs, cache)[:, 1:10]
        calls += 1
        if on_call:
            on_call()
        digit = logits.argmax(1) + 1
        seqs = torch.cat([seqs, torch.where(active, digit, SEP)[:, None]], 1)
        write = active & todo[rows, cell]
        grid[rows[write], cell[write]] = digit[write]
        written_at[rows[write], cell[write]] = t
        todo[rows[write], cell[write]] = False
        left = todo.sum(1)
    return (grid, calls, written_at) if return_order else (grid, calls)


def arm_model(preset_body: dict) -> Transformer:
    return Transformer(arm_config(**preset_body))


def arm_order_of(model) -> str:
    """The order an ARM was trained in (set by training and by `fastmdm.sudoku.model.load`)."""
    order = getattr(model, "arm_order", None)
    if order not in ORDERS:
        raise ValueError("model: this ARM does not say which order it was trained in (arm_order); load it with "
                         "fastmdm.sudoku.model.load, which reads train.arch from its config.json")
    return order


@torch.no_grad()
def answer_arm(model, puzzles, *, batch_size: int = 256, progress: bool = False, desc: str = "solve", ranks=None):
    """(answers int8 [N, 81], valid bool [N], mean model calls per batch) of an ARM for puzzles [N, 81].
    `ranks` [N, 81] (`fill_orders`' format): write the blanks in that order, the model giving only the digits."""
    from tqdm import tqdm  # noqa: PLC0415

    from fastmdm.sudoku.grids import valid_solutions  # noqa: PLC0415
    order = arm_order_of(model)
    puzzles = torch.as_tensor(np.asarray(puzzles)).long() if not isinstance(puzzles, torch.Tensor) else puzzles.long()
    per_blank = calls_per_blank(order, ranks is not None)
    if ranks is not None:
        ranks = torch.as_tensor(np.asarray(ranks)).long()
    total = sum(per_blank * int((puzzles[i:i + batch_size] == 0).sum(1).max())
                for i in range(0, len(puzzles), batch_size))
    answers, valid, calls = [], [], []
    was_training = model.training
    model.eval()
    with tqdm(total=total, desc=f"{desc} arm-{order}", unit="call", disable=not progress, leave=False) as bar:
        for i in range(0, len(puzzles), batch_size):
            p = puzzles[i:i + batch_size]
            a, c = decode_arm(model, p, order, on_call=lambda: bar.update(1),
                              ranks=None if ranks is None else ranks[i:i + batch_size])
            a = a.cpu()
            answers.append(a.to(torch.int8).numpy())
            valid.append(valid_solutions(p, a).numpy())
            calls.append(c)
    model.train(was_training)
    if not answers:
        return np.zeros((0, 81), np.int8), np.zeros(0, bool), 0.0
    return np.concatenate(answers), np.concatenate(valid), float(np.mean(calls))


def arm_decoder(model, *, batch_size: int = 256, bar=None):
    """The ARM as a `fastmdm.sudoku.analyze.Decoder`: puzzles -> (answers, the step each cell was written)."""
    order = arm_order_of(model)

    def decode(puzzles):
        answers, steps = [], []
        for i in range(0, len(puzzles), batch_size):
            p = torch.as_tensor(np.asarray(puzzles[i:i + batch_size])).long()
            a, _, w = decode_arm(model, p, order, return_order=True, on_call=bar.update if bar is not None else None)
            answers.append(a.cpu().to(torch.int8).numpy())
            steps.append(w.cpu().numpy())
        if not answers:
            return np.zeros((0, 81), np.int8), np.zeros((0, 81), np.int64)
        return np.concatenate(answers), np.concatenate(steps)
    return decode
