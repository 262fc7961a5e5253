"""L&O-NAE-SAT files: the text format and the .npz format of `fastmdm nae generate`, and reading either back.

Text: a header line naming the task, then one sequence per line, the N latent characters, a space, the P
observation characters ('0', '1', and '.' for a masked position; '#' lines and blank lines are skipped):

    # fastmdm nae latents=25 observations=275 arity=3 structure_seed=0 seed=0
    0110100011101010011100110 11101111011...

npz: "tokens" int8 [n, N + P], "clauses" int32 [P, k], and the task's "latents", "observations", "arity",
"structure_seed" and the data "seed" as 0-d arrays. Written with fixed zip timestamps, so the same data
give the same bytes.
"""
from __future__ import annotations

import os

import numpy as np

from fastmdm.checkpoint import atomic_save_npz
from fastmdm.nae.engine import Task, as_sequences

HEADER = "# fastmdm nae"
_TASK_KEYS = ("latents", "observations", "arity", "structure_seed")
_CHARS = np.frombuffer(b"01.", np.uint8)
_CODES = np.full(256, -1, np.int8)
for _i, _c in enumerate(b"01."):
    _CODES[_c] = _i


def header(task: Task, seed: int | None = None) -> str:
    keys = " ".join(f"{k}={getattr(task, k)}" for k in _TASK_KEYS)
    return f"{HEADER} {keys}" + (f" seed={seed}" if seed is not None else "")


def parse_header(line: str) -> tuple[Task, int | None]:
    """(task, seed or None) from a header line; ValueError if it is malformed."""
    fields = {}
    for item in line[len(HEADER):].split():
        key, eq, value = item.partition("=")
        if not eq or not value.isdigit():
            raise ValueError(f"header field {item!r} is not key=integer")
        fields[key] = int(value)
    missing = [k for k in _TASK_KEYS if k not in fields]
    if missing:
        raise ValueError(f"header lacks {', '.join(missing)}")
    unknown = sorted(set(fields) - set(_TASK_KEYS) - {"seed"})
    if unknown:
        raise ValueError(f"header has unknown fields {', '.join(unknown)}")
    return Task(**{k: fields[k] for k in _TASK_KEYS}), fields.get("seed")


def format_lines(tokens, task: Task, seed: int | None = None) -> str:
    """The text format: the header, then '<latents> <observations>' per sequence."""
    arr, _ = as_sequences(tokens, task, "tokens")
    chars = _CHARS[arr.astype(np.intp)]
    n = task.latents
    rows = (f"{r[:n].tobytes().decode()} {r[n:].tobytes().decode()}\n" for r in chars)
    return header(task, seed) + "\n" + "".join(rows)


def parse_line(text: str, task: Task, line: int | None = None) -> np.ndarray:
    """One text line (latents, a space, observations; or all N + P characters together) as int8 [N + P]."""
    where = f"line {line}: " if line is not None else ""
    parts = text.split()
    if len(parts) == 2 and len(parts[0]) != task.latents:
        raise ValueError(f"{where}the latent block has {len(parts[0])} characters, expected {task.latents}")
    joined = "".join(parts)
    if len(parts) > 2 or len(joined) != task.length:
        raise ValueError(f"{where}expected {task.latents} latent characters, a space and {task.observations} "
                         f"observation characters, got {len(joined)} characters in {len(parts)} groups")
    raw = joined.encode("utf-8", "replace")
    codes = _CODES[np.frombuffer(raw, np.uint8)] if len(raw) == len(joined) else np.full(1, -1, np.int8)
    if (codes < 0).any():
        bad = next(ch for ch in joined if ch not in "01.")
        raise ValueError(f"{where}character {bad!r} at position {joined.index(bad)}; use 0, 1 and '.' (masked)")
    return codes


def read_text(path_or_lines, task: Task | None = None) -> tuple[np.ndarray, Task, list[int]]:
    """Sequences from a text file (path) or an iterable of lines: (int8 [n, N + P], task, line numbers).
    The header gives the task; `task` is needed when there is no header, and must match it when there is."""
    if isinstance(path_or_lines, (str, os.PathLike)):
        with open(path_or_lines, encoding="utf-8") as f:
            lines = f.read().splitlines()
    else:
        lines = list(path_or_lines)
    rows, numbers = [], []
    for i, raw in enumerate(lines, start=1):
        text = raw.strip()
        if text.startswith(HEADER):
            try:
                found, _ = parse_header(text)
            except ValueError as e:
                raise ValueError(f"line {i}: {e}") from None
            if task is not None and found != task:
                raise ValueError(f"line {i}: the header's task ({found.describe()}) differs from the one given "
                                 f"({task.describe()})")
            task = found
            continue
        if not text or text.startswith("#"):
            continue
        if task is None:
            raise ValueError(f"line {i}: a sequence before any '{HEADER} ...' header line, and no task was given")
        rows.append(parse_line(text, task, line=i))
        numbers.append(i)
    if task is None:
        raise ValueError(f"no sequences and no '{HEADER} ...' header")
    tokens = np.stack(rows) if rows else np.zeros((0, task.length), np.int8)
    return tokens, task, numbers


def save_npz(path, tokens, task: Task, seed: int | None = None) -> None:
    """Write the npz format atomically (a temporary file, then os.replace) with fixed zip timestamps."""
    arr, _ = as_sequences(tokens, task, "tokens")
    arrays = {"tokens": arr, "clauses": task.clauses}
    arrays.update({k: np.array(getattr(task, k), np.uint64) for k in _TASK_KEYS})
    if seed is not None:
        arrays["seed"] = np.array(seed, np.uint64)
    atomic_save_npz(path, arrays)


def load_npz(path, task: Task | None = None) -> tuple[np.ndarray, Task]:
    """(tokens int8 [n, N + P], task) from the npz format. The stored clauses must be the task's (derived from
    its structure seed): a file whose clauses differ is refused rather than checked against the wrong ones."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("tokens", "clauses", *_TASK_KEYS) if k not in z.files]
        if missing:
            raise ValueError(f"not an L&O-NAE-SAT file of `fastmdm nae generate` (no {', '.join(missing)})")
        found = Task(**{k: int(z[k]) for k in _TASK_KEYS})
        tokens, clauses = z["tokens"], z["clauses"]
    if task is not None and found != task:
        raise ValueError(f"the file's task ({found.describe()}) differs from the one given ({task.describe()})")
    if clauses.shape != found.clauses.shape or not np.array_equal(clauses, found.clauses):
        raise ValueError(f"its clauses are not those of structure seed {found.structure_seed} "
                         f"(N={found.latents}, P={found.observations}, k={found.arity}); the file is damaged or "
                         "was written by another generator")
    arr, _ = as_sequences(tokens, found, "tokens")
    return arr, found


def is_npz(path) -> bool:
    """Whether `path` starts like a zip archive (an .npz), whatever its suffix."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


__all__ = ["HEADER", "header", "parse_header", "format_lines", "parse_line", "read_text", "save_npz",
           "load_npz", "is_npz"]
