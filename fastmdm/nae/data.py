"""L&O-NAE-SAT data for an MDM: the token encoding, a numpy reference of the observations, and cached datasets.

Encoding: a sequence is N + P tokens, the N latents first, then the P observations (observation j at
position N + j belongs to clause j of the task). Tokens 0 and 1 are values; MASK_ID (2) is the model's
mask token, so VOCAB_SIZE is 3. A generated sequence never holds the mask; a partial one (a model's input)
holds it where a value is hidden. Which positions are latents and which observations is fixed by the task
(`Task.latent_positions`, `Task.observation_positions`), never by the tokens.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from fastmdm.nae.engine import MASK_ID, VALUES, VOCAB_SIZE, Task, as_sequences, generate

__all__ = ["MASK_ID", "VALUES", "VOCAB_SIZE", "TEST_SEED", "observe", "encode", "decode", "Decoded",
           "cached_generate", "test_set"]

#: the seed reserved for the project's L&O-NAE-SAT test sets; training data uses other seeds
TEST_SEED = 3_000_017


def observe(latents, task: Task) -> np.ndarray:
    """The observations of latent rows [n, N] (or one [N]) under `task`, in numpy: int8 [n, P] (or [P]).
    An implementation independent of the native engine, used to cross-check it."""
    x = np.asarray(latents)
    single = x.ndim == 1
    x = x[None] if single else x
    if x.ndim != 2 or x.shape[1] != task.latents:
        raise ValueError(f"latents must have shape [n, {task.latents}] or [{task.latents}], got {np.shape(latents)}")
    if not np.isin(x, VALUES).all():
        raise ValueError(f"latents must be 0 or 1, got values {sorted(set(np.unique(x).tolist()) - set(VALUES))}")
    picked = x[:, task.clauses]  # [n, P, k]
    obs = (picked != picked[:, :, :1]).any(axis=2).astype(np.int8)
    return obs[0] if single else obs


def encode(latents, task: Task) -> np.ndarray:
    """Complete sequences from latent rows: int8 [n, N + P] (or [N + P]), latents then their observations."""
    x = np.asarray(latents)
    obs = observe(x, task)
    return np.concatenate([x.astype(np.int8), obs], axis=-1)


class Decoded(NamedTuple):
    """Result of `decode`: `latents` int8 [n, N] and `observations` int8 [n, P] (or [N] and [P])."""

    latents: np.ndarray
    observations: np.ndarray


def decode(sequences, task: Task) -> Decoded:
    """Split sequences [n, N + P] (or one [N + P]) into their latent and observation blocks (MASK_ID kept)."""
    arr, single = as_sequences(sequences, task)
    out = Decoded(arr[:, task.latent_positions], arr[:, task.observation_positions])
    return Decoded(out.latents[0], out.observations[0]) if single else out


def _cache_name(n: int, task: Task, seed: int) -> str:
    return (f"nae_N{task.latents}_P{task.observations}_k{task.arity}_s{task.structure_seed}"
            f"_n{n}_seed{seed}.npz")


def cached_generate(n: int, task: Task, seed: int, cache_dir=None, progress: bool = False) -> np.ndarray:
    """`engine.generate(n, task, seed)`, cached as .npz under `cache_dir` (the engine is deterministic in
    (n, task, seed)); int8 [n, N + P]."""
    if cache_dir is None:
        return generate(n, task, seed, progress=progress)
    path = Path(cache_dir) / _cache_name(int(n), task, int(seed))
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["tokens"]
    tokens = generate(n, task, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, tokens=tokens)
    tmp.replace(path)
    return tokens


def test_set(n: int, task: Task | None = None, cache_dir=None) -> np.ndarray:
    """The project's held-out test set for `task` (default `Task()`): the first n sequences of the TEST_SEED
    stream."""
    return cached_generate(n, Task() if task is None else task, TEST_SEED, cache_dir)
