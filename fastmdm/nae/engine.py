"""Python API of the native L&O-NAE-SAT engine: tasks, generation, the exact checker and exact completion counts.

L&O-NAE-SAT is the latents-and-observations distribution of Kim et al. (ICML 2025, section 3.3) whose
observations are not-all-equal predicates. A `Task` fixes N latents, P observations, the clause width k
(the paper: 3) and a structure seed; the structure seed fixes the P clauses (k distinct latent indices
each, no two clauses alike) once for the whole distribution. A sequence is N + P tokens, latents first
(the paper's identity permutation):

    latents       x_0 .. x_{N-1}   independent uniform bits
    observations  y_j = NAE(x_{S_j}) = 1 - [all latents of clause S_j are equal],   j = 0 .. P-1

Tokens are 0 and 1; `MASK_ID` (2) marks a masked position in a partial sequence. Sequence i of a run
depends only on (seed, start + i) and the task's latent count, so the output is the same for any thread
count and the first k sequences of a run are the sequences of a run of k. `docs/nae.md` sets this beside
the paper's definition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from fastmdm import _native, native_args
from fastmdm.native_args import is_int as _is_int
from fastmdm.native_args import seed as _seed
from fastmdm.native_args import threads as _threads

VALUES: tuple[int, ...] = (0, 1)
MASK_ID = 2
VOCAB_SIZE = 3  # values and the mask

#: (N, P) of the paper's L&O-NAE-SAT runs, all of length 300: section 3.3's error-imbalance run (20, 280)
#: and Table 1's five (vanilla vs adaptive decoding)
PAPER_SIZES: tuple[tuple[int, int], ...] = ((20, 280), (25, 275), (30, 270), (40, 260), (50, 250), (100, 200))
PAPER_ARITY = 3

MAX_ARITY = 32
MAX_LATENTS = 1 << 20
MAX_LENGTH = 1 << 24
#: exact counting enumerates up to 2**(masked latents) assignments; refuse rows with more masked latents
MAX_COUNT_LATENTS = 40
_CHUNK = 16384


@dataclass(frozen=True)
class Task:
    """One L&O-NAE-SAT distribution: `latents` N, `observations` P, clause width `arity` k and the
    `structure_seed` that fixes the clauses. The default is the paper's first Table 1 task, (25, 275), k=3."""

    latents: int = 25
    observations: int = 275
    arity: int = PAPER_ARITY
    structure_seed: int = 0

    def __post_init__(self):
        n, p, k = self.latents, self.observations, self.arity
        if not _is_int(n) or not 2 <= n <= MAX_LATENTS:
            raise ValueError(f"latents must be an integer in [2, {MAX_LATENTS}], got {n!r}")
        if not _is_int(p) or not 1 <= p <= MAX_LENGTH - n:
            raise ValueError(f"observations must be an integer in [1, {MAX_LENGTH} - latents], got {p!r}")
        if not _is_int(k) or not 2 <= k <= min(n, MAX_ARITY):
            raise ValueError(f"arity must be an integer in [2, min(latents, {MAX_ARITY})] (a clause is that many "
                             f"distinct latents), got {k!r} with latents={n}")
        if p > math.comb(n, k):
            raise ValueError(f"observations must be at most C(latents, arity) = {math.comb(n, k)}: every clause is a "
                             f"different set of {k} latents, got {p!r}")
        _seed(self.structure_seed, "structure_seed")
        for name in ("latents", "observations", "arity", "structure_seed"):
            object.__setattr__(self, name, int(getattr(self, name)))

    @property
    def length(self) -> int:
        """Sequence length N + P."""
        return self.latents + self.observations

    @property
    def latent_positions(self) -> slice:
        return slice(0, self.latents)

    @property
    def observation_positions(self) -> slice:
        return slice(self.latents, self.length)

    @cached_property
    def clauses(self) -> np.ndarray:
        """int32 [P, k], read-only: clause j's latent indices, ascending; no two clauses are the same set.
        Clause j is uniform over the k-sets that clauses 0..j-1 did not take and depends only on
        (structure_seed, latents, arity, j), so a task with more observations extends one with fewer."""
        c = np.zeros((self.observations, self.arity), np.int32)
        _native.nae_clauses(c, self.latents, self.structure_seed)
        c.setflags(write=False)
        return c

    def describe(self) -> str:
        return (f"N={self.latents} latents, P={self.observations} observations, clause width {self.arity}, "
                f"structure seed {self.structure_seed}")


def _task(task) -> Task:
    if not isinstance(task, Task):
        raise TypeError(f"task must be a fastmdm.nae.Task, got {type(task).__name__}")
    return task


def as_sequences(x, task: Task, name: str = "sequences") -> tuple[np.ndarray, bool]:
    """Sequences as a C-contiguous int8 [n, N + P] array of tokens 0, 1 and MASK_ID; the flag says whether one
    sequence [N + P] was given. Accepts numpy arrays, nested sequences and torch tensors of integers."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise ValueError(f"{name} must be integer tokens (0, 1, {MASK_ID} for a mask), got dtype {arr.dtype}")
    single = arr.ndim == 1
    if single:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != task.length:
        raise ValueError(f"{name} must have shape [n, {task.length}] or [{task.length}] (N={task.latents} latents "
                         f"then P={task.observations} observations), got {tuple(np.shape(x))}")
    bad = (arr < 0) | (arr > MASK_ID)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name}: row {r}, position {c} holds {arr[r, c]}; tokens are 0, 1 and {MASK_ID} (mask)")
    return np.ascontiguousarray(arr, dtype=np.int8), single


def generate(n: int, task: Task | None = None, seed: int = 0, threads: int | None = None, progress: bool = False,
             *, start: int = 0) -> np.ndarray:
    """`n` sequences of `task` (default `Task()`): int8 [n, N + P], latents then observations.

    seed: any integer in [0, 2**64); sequence i depends only on (seed, start + i) and the task.
    threads: worker threads (None = all cores); the output does not depend on it.
    progress: a tqdm progress bar on stderr. start: index of the first sequence (a large set in pieces).
    """
    task = Task() if task is None else _task(task)
    n, seed, start = native_args.generation(n, seed, start, task.length)
    nthreads = _threads(threads)
    out = np.zeros((n, task.length), np.int8)
    with native_args.chunks(n, _CHUNK, progress, "nae", "seq") as pieces:
        for a, b in pieces:
            _native.nae_generate(out[a:b], task.clauses, task.latents, int(start) + a, seed, nthreads)
    return out


class Check(NamedTuple):
    """Result of `check`: `ok` bool [n] (the whole sequence is consistent), `ok_tokens` bool [n, N + P]
    (a latent holds 0 or 1; an observation holds 0 or 1, its clause's latents hold values, and it equals
    their NAE predicate), `bad` int32 [n] (positions not ok) and `observation_accuracy` float64 [n] (the
    fraction of observation tokens that are ok: the paper's Table 1 metric, per sequence)."""

    ok: np.ndarray
    ok_tokens: np.ndarray
    bad: np.ndarray
    observation_accuracy: np.ndarray


def check(sequences, task: Task, threads: int | None = None) -> Check:
    """Check completed sequences exactly against `task`. A masked position (MASK_ID) is not ok, and neither is
    an observation whose clause has a masked latent. `sequences`: [n, N + P] or one [N + P]."""
    task = _task(task)
    arr, _ = as_sequences(sequences, task)
    ok_tokens = np.zeros(arr.shape, np.uint8)
    bad = np.zeros(len(arr), np.int32)
    _native.nae_check(arr, task.clauses, task.latents, ok_tokens, bad, _threads(threads))
    ok_tokens = ok_tokens.view(bool)
    acc = ok_tokens[:, task.observation_positions].mean(axis=1) if len(arr) else np.zeros(0)
    return Check(bad == 0, ok_tokens, bad, acc)


def _partial(partial, task: Task) -> np.ndarray:
    arr, _ = as_sequences(partial, task, "partial")
    free = (arr[:, task.latent_positions] == MASK_ID).sum(axis=1)
    if len(arr) and free.max() > MAX_COUNT_LATENTS:
        r = int(np.argmax(free))
        raise ValueError(f"partial: row {r} has {int(free[r])} masked latents; exact counting enumerates up to "
                         f"2**(masked latents) assignments, so at most {MAX_COUNT_LATENTS} are allowed")
    return arr


def count_completions(partial, task: Task, limit: int = 2**62, threads: int | None = None) -> np.ndarray:
    """Exact number of completions of each partial sequence (MASK_ID at masked positions), counted up to
    `limit`: int64 [n]. A completion sets the masked latents so that every visible observation equals its
    NAE predicate (masked observations then follow), so 0 means the visible tokens contradict each other.
    Exponential in the number of masked latents (at most MAX_COUNT_LATENTS): for small tasks and tests."""
    task = _task(task)
    arr = _partial(partial, task)
    if not _is_int(limit) or not 1 <= limit < 2**63:
        raise ValueError(f"limit must be an integer in [1, 2**63), got {limit!r}")
    counts = np.zeros(len(arr), np.int64)
    _native.nae_count(arr, task.clauses, task.latents, int(limit), counts, None, _threads(threads))
    return counts


def completable(partial, task: Task, threads: int | None = None) -> np.ndarray:
    """bool [n]: whether each partial sequence has at least one completion (`count_completions` > 0)."""
    return count_completions(partial, task, limit=1, threads=threads) > 0


class Posterior(NamedTuple):
    """Result of `posterior`: `count` int64 [n] completions, `p_one` float64 [n, N + P], the exact probability
    under the data distribution that each position is 1 given the visible tokens (1 or 0 at a visible
    position; NaN in a row with no completion)."""

    count: np.ndarray
    p_one: np.ndarray


def posterior(partial, task: Task, threads: int | None = None) -> Posterior:
    """The Bayes-optimal predictor of every position given the visible tokens, by exact enumeration of the
    completions (latents are uniform, so every completion is equally likely). Same limits as
    `count_completions`; the whole search always runs."""
    task = _task(task)
    arr = _partial(partial, task)
    counts = np.zeros(len(arr), np.int64)
    ones = np.zeros(arr.shape, np.int64)
    _native.nae_count(arr, task.clauses, task.latents, 2**62, counts, ones, _threads(threads))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ones / counts[:, None].astype(np.float64)
    return Posterior(counts, p)
