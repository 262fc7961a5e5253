"""Schedules (`fastmdm.engine.Plan`s: how many positions each row fills per step) and the layouts they run on.

- `KPlan`: k positions per row per step;
- `StepsPlan`: LLaDA's split of each group's masks over a number of steps;
- `ThresholdPlan`: every position scoring >= tau, and at least each row's best (Fast-dLLM's threshold);
- `FactorPlan`: Fast-dLLM's "factor" rule: the n best positions while the n-th best scores >= 1 - f / (n + 1).
"""
from __future__ import annotations

import torch

from fastmdm import ops
from fastmdm.validate import check_int, check_number


def groups_by_rank(fillable: torch.Tensor, block_size: int | None) -> torch.Tensor:
    """Group id per position: each row's fillable positions, left to right, in groups of `block_size`."""
    if block_size is None:
        return torch.zeros_like(fillable, dtype=torch.long)
    rank = torch.cumsum(fillable.long(), dim=-1) - 1
    return torch.where(fillable, rank // block_size, torch.zeros_like(rank))


def groups_per_row(fillable: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """How many groups each row's fillable positions span."""
    if fillable.shape[-1] == 0:
        return torch.zeros(fillable.shape[0], dtype=torch.long, device=fillable.device)
    return torch.where(fillable, groups + 1, torch.zeros_like(groups)).max(-1).values


class KPlan:
    """Fill `k` positions per row per step (fewer when fewer are left in the group)."""

    def __init__(self, k: int):
        self.k = k

    def prepare(self, n_eligible, new_group):
        self.counts = n_eligible.clamp(max=self.k)
        return self.counts > 0

    def choose(self, scores, eligible, backend):
        return ops.select_positions(scores, eligible, counts=self.counts, backend=backend)


class StepsPlan:
    """LLaDA's split: each row's group gets `steps // groups_in_row` steps; a group of n masks fills
    n // S per step, the first n % S steps one more. Steps where no row fills anything cost no model call."""

    def __init__(self, steps: int, groups_per_row: torch.Tensor):
        self.per_group = steps // groups_per_row.clamp(min=1)
        if bool((self.per_group == 0).any()):
            worst = int(groups_per_row.max())
            raise ValueError(f"steps: {steps} is fewer than the {worst} blocks of a row; pass steps >= {worst} "
                             "or a larger block size")
        self.step_in_group = torch.zeros_like(self.per_group)
        self.group_size = torch.zeros_like(self.per_group)

    def prepare(self, n_eligible, new_group):
        self.step_in_group = torch.where(new_group, torch.zeros_like(self.step_in_group), self.step_in_group)
        self.group_size = torch.where(new_group, n_eligible, self.group_size)
        S, s = self.per_group, self.step_in_group
        counts = self.group_size // S + (s < self.group_size % S).long()
        counts = torch.where(s >= S - 1, n_eligible, counts)  # the last step of a group finishes it
        self.counts = torch.minimum(counts, n_eligible)
        self.step_in_group = s + (n_eligible > 0).long()
        return self.counts > 0

    def choose(self, scores, eligible, backend):
        return ops.select_positions(scores, eligible, counts=self.counts, backend=backend)


class ThresholdPlan:
    """Fill every eligible position scoring >= tau, and at least each row's best (Fast-dLLM)."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)

    def prepare(self, n_eligible, new_group):
        return n_eligible > 0

    def choose(self, scores, eligible, backend):
        return ops.select_positions(scores, eligible, threshold=self.threshold, backend=backend)


class FactorPlan:
    """Fast-dLLM's factor rule: with a row's eligible scores sorted best first, s_1 >= s_2 >= ..., fill the n
    best where n + 1 is the first rank whose score falls below 1 - factor / (rank + 1) (the best is always
    filled). As in Fast-dLLM, when that first failing rank is the row's last eligible position, it is filled
    too, so a group never ends with exactly one position left over by the rule."""

    def __init__(self, factor: float):
        self.factor = float(factor)

    def prepare(self, n_eligible, new_group):
        self.n = n_eligible
        return n_eligible > 0

    def choose(self, scores, eligible, backend):
        B, L = scores.shape
        ranked = torch.sort(torch.where(eligible, scores, -torch.inf), dim=-1, descending=True).values
        rank = torch.arange(L, device=scores.device)
        need = 1 - self.factor / (rank + 2).to(torch.float32)  # 0-based rank j needs 1 - f / (j + 2)
        fails = (ranked < need) & (rank > 0) & (rank < self.n[:, None])
        first = torch.where(fails.any(-1), fails.to(torch.int8).argmax(-1), self.n)
        counts = torch.where(first == self.n - 1, self.n, first)
        return ops.select_positions(scores, eligible, counts=counts, backend=backend)


def make_plan(k=None, steps=None, threshold=None, groups_per_row=None, factor=None):
    """The plan for one of the schedule arguments (k=1 when none is given)."""
    given = [name for name, v in (("k", k), ("steps", steps), ("threshold", threshold), ("factor", factor))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"pass only one schedule: got {' and '.join(given)}; use k= (positions per step), "
                         "steps= (LLaDA's split), threshold= or factor= (Fast-dLLM)")
    check_int("k", k)
    check_int("steps", steps)
    if steps is not None:
        return StepsPlan(steps, groups_per_row)
    if threshold is not None:
        return ThresholdPlan(threshold)
    if factor is not None:
        check_number("factor", factor, low_open=True)
        return FactorPlan(factor)
    return KPlan(1 if k is None else k)


def generation_layout(prompt_ids, gen_length, block_length, mask_id, attention_mask):
    """(x, attention_mask, fillable, groups, groups_per_row) for prompts [B, P] followed by `gen_length` masks,
    the blocks of `block_length` (all of them when None) starting at the end of the (left-padded) prompt. Mask
    tokens inside a prompt join the first block."""
    check_int("gen_length", gen_length)
    check_int("block_length", block_length)
    B, P = prompt_ids.shape
    dev = prompt_ids.device
    x = torch.cat([prompt_ids.long(), torch.full((B, gen_length), mask_id, dtype=torch.long, device=dev)], 1)
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, torch.ones(B, gen_length, dtype=attention_mask.dtype,
                                                               device=dev)], 1)
    fillable = x == mask_id
    if attention_mask is not None:
        fillable &= attention_mask.bool()
    pos = torch.arange(P + gen_length, device=dev).expand(B, -1)
    block = block_length or gen_length
    groups = torch.where(pos >= P, (pos - P) // block, torch.zeros_like(pos))
    per_row = torch.full((B,), -(-gen_length // block), dtype=torch.long, device=dev)
    return x, attention_mask, fillable, groups, per_row
