"""Sudoku grids: parsing, reading files, printing, validation and augmentation.

Convention everywhere: 81 cells in row-major order, 0 for a blank, 1-9 for a digit. In text a blank
is '.' or '0'.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch

_DIGITS = np.full(256, -1, np.int8)
_DIGITS[ord(".")] = 0
for _d in range(10):
    _DIGITS[ord(str(_d))] = _d


def _where(line: int | None) -> str:
    return f"line {line}: " if line is not None else ""


def parse_puzzle(s: str, line: int | None = None) -> np.ndarray:
    """Parse an 81-character grid ('.' or '0' for a blank, '1'-'9' for a digit) into int8 [81].

    Surrounding whitespace is ignored. Raises ValueError naming `line` (when given) for a wrong
    length or any other character.
    """
    if not isinstance(s, str):
        raise TypeError(f"{_where(line)}puzzle must be a str of 81 characters, got {type(s).__name__}")
    t = s.strip()
    if len(t) != 81:
        raise ValueError(f"{_where(line)}puzzle has {len(t)} characters, expected 81 ('.' or '0' for a blank, 1-9)")
    if not t.isascii():
        bad = next(ch for ch in t if not ch.isascii())
        raise ValueError(f"{_where(line)}puzzle has the character {bad!r} at position {t.index(bad)}; "
                         f"use '.' or '0' for a blank and 1-9 for digits")
    cells = _DIGITS[np.frombuffer(t.encode("ascii"), np.uint8)]
    if (cells < 0).any():
        i = int(np.argmax(cells < 0))
        raise ValueError(f"{_where(line)}puzzle has the character {t[i]!r} at position {i}; "
                         f"use '.' or '0' for a blank and 1-9 for digits")
    return cells.copy()


def _lines(path_or_lines) -> Iterable[str]:
    if isinstance(path_or_lines, (str, os.PathLike)):
        with open(path_or_lines, encoding="utf-8") as f:
            yield from f
    else:
        yield from path_or_lines


def read_dataset(path_or_lines, check: bool = False) -> dict[str, np.ndarray]:
    """Read puzzles from a text file (or an iterable of lines) or a `.npz` written by `generate`.

    Text: one puzzle per line, optionally followed by its solution and the name of its hardest
    strategy (`<puzzle> [<solution> [<strategy>]]`, the format `fastmdm sudoku generate` writes);
    blank lines and lines starting with '#' are skipped. Errors name the line.
    Returns "puzzles" int8 [n, 81], and "solutions" int8 [n, 81] when every line has one (plus all
    arrays of an npz file); text input also gives "line", each puzzle's 1-based line number (int32 [n]).
    check=True also solves every puzzle and raises ValueError naming the first line (or index, for npz)
    whose givens clash or that has no solution or several.
    """
    if isinstance(path_or_lines, (str, os.PathLike)) and str(path_or_lines).endswith(".npz"):
        with np.load(path_or_lines, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        if "puzzles" not in out:
            raise ValueError(f"{path_or_lines}: no 'puzzles' array (has {sorted(out)})")
        if check:
            _check_all(out["puzzles"], [f"puzzle {i}" for i in range(len(out["puzzles"]))])
        return out
    puzzles, solutions, where, numbers = [], [], [], []
    for i, raw in enumerate(_lines(path_or_lines), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        if len(fields) > 3:
            raise ValueError(f"line {i}: expected '<puzzle> [<solution> [<strategy>]]', got {len(fields)} fields")
        puzzles.append(parse_puzzle(fields[0], line=i))
        where.append(f"line {i}")
        numbers.append(i)
        if len(fields) >= 2:
            sol = parse_puzzle(fields[1], line=i)
            if (sol == 0).any():
                raise ValueError(f"line {i}: solution has blanks; it must be a complete grid")
            clash = (puzzles[-1] != 0) & (puzzles[-1] != sol)
            if clash.any():
                raise ValueError(f"line {i}: solution changes the clue at cell {int(np.argmax(clash))}")
            solutions.append(sol)
    out = {"puzzles": np.stack(puzzles) if puzzles else np.zeros((0, 81), np.int8),
           "line": np.asarray(numbers, dtype=np.int32)}
    if solutions and len(solutions) == len(puzzles):
        out["solutions"] = np.stack(solutions)
    elif solutions:
        raise ValueError("some lines have a solution and some do not; give one on every line or none")
    if check:
        _check_all(out["puzzles"], where)
    return out


def _check_all(puzzles: np.ndarray, where: list[str]) -> None:
    from fastmdm.sudoku import engine  # noqa: PLC0415

    status = engine.check_puzzles(puzzles)
    bad = np.flatnonzero(status != engine.OK)
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{where[i]}: {engine.STATUS_NAMES[status[i]]} ({len(bad)} bad puzzles in all)")


def givens_clash(puzzles) -> np.ndarray:
    """Bool [n]: whether two givens of a puzzle repeat a digit in a row, column or box (vectorized)."""
    arr, _ = as_grid_array(puzzles)
    units = arr[:, _UNITS.numpy()].astype(np.int64)  # [n, 27, 9]
    onehot = units[..., None] == np.arange(1, 10)  # [n, 27, 9, 9]
    return (onehot.sum(axis=2) > 1).any(axis=(1, 2))


def read_puzzles(path_or_lines) -> np.ndarray:
    """Read puzzles (int8 [n, 81]) from a file path or an iterable of lines; see `read_dataset`."""
    return read_dataset(path_or_lines)["puzzles"]


def as_grid_array(x, name: str = "puzzles") -> tuple[np.ndarray, bool]:
    """Any grid or batch of grids (str, sequence, numpy array, torch tensor) as a C-contiguous
    int8 [n, 81] array, plus whether a single grid was given. Values must be 0-9."""
    if isinstance(x, str):
        return parse_puzzle(x)[None], True
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise TypeError(f"{name} must hold integers 0-9, got dtype {arr.dtype}")
    single = arr.ndim == 1 or arr.shape == (9, 9)
    if arr.shape == (9, 9) or arr.ndim == 1:
        arr = arr.reshape(1, -1)
    elif arr.ndim == 3 and arr.shape[1:] == (9, 9):
        arr = arr.reshape(len(arr), 81)
    if arr.ndim != 2 or arr.shape[1] != 81:
        raise ValueError(f"{name} must have 81 cells per grid ([81], [9, 9], [n, 81] or [n, 9, 9]), "
                         f"got shape {np.shape(x)}")
    if arr.size and (arr.min() < 0 or arr.max() > 9):
        raise ValueError(f"{name} must hold 0 (blank) or 1-9, got values in [{arr.min()}, {arr.max()}]")
    return np.ascontiguousarray(arr, dtype=np.int8), single


def check_givens(puzzle, line: int | None = None) -> None:
    """Raise ValueError (naming `line`) if two givens of one puzzle repeat a digit in a unit."""
    arr, single = as_grid_array(puzzle, "puzzle")
    if not single:
        raise ValueError("check_givens takes one puzzle")
    g = arr[0].reshape(9, 9)
    boxes = g.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
    for kind, units in (("row", g), ("column", g.T), ("box", boxes)):
        for u, cells in enumerate(units):
            digits = cells[cells > 0]
            if len(np.unique(digits)) != len(digits):
                vals, counts = np.unique(digits, return_counts=True)
                raise ValueError(f"{_where(line)}contradictory givens: digit {int(vals[counts > 1][0])} "
                                 f"appears twice in {kind} {u + 1}")


def format_grid(arr) -> str:
    """One grid as an 81-character string, '.' for a blank."""
    a, single = as_grid_array(arr, "grid")
    if not single:
        raise ValueError(f"format_grid takes one grid, got {len(a)}")
    return "".join("." if v == 0 else chr(48 + int(v)) for v in a[0])


def pretty(arr) -> str:
    """One grid as a boxed 13-line picture, '.' for a blank."""
    s = format_grid(arr)
    sep = "+-------+-------+-------+"
    out = [sep]
    for r in range(9):
        row = s[9 * r: 9 * r + 9]
        out.append("| " + " | ".join(" ".join(row[3 * b: 3 * b + 3]) for b in range(3)) + " |")
        if r % 3 == 2:
            out.append(sep)
    return "\n".join(out)


# Cell indices of the 27 units: rows, columns, boxes. [27, 9]
_UNITS = torch.tensor(
    [[r * 9 + c for c in range(9)] for r in range(9)]
    + [[r * 9 + c for r in range(9)] for c in range(9)]
    + [[((b // 3) * 3 + i // 3) * 9 + (b % 3) * 3 + i % 3 for i in range(9)] for b in range(9)]
)


def _check_batch(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, 81], got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype.is_complex:
        raise TypeError(f"{name} must be an integer tensor (0 = blank, 1-9), got {x.dtype}")
    if x.dim() != 2 or x.shape[1] != 81:
        raise ValueError(f"{name} must have shape [B, 81], got {tuple(x.shape)}")
    return x


def valid_solutions(puzzles: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """BoolTensor [B]: answer b keeps every clue of puzzle b and is a complete valid grid
    (every row, column and box holds 1-9 once). Any other value (a blank, a mask id) is invalid."""
    _check_batch(puzzles, "puzzles")
    _check_batch(answers, "answers")
    if puzzles.shape != answers.shape:
        raise ValueError(f"puzzles {tuple(puzzles.shape)} and answers {tuple(answers.shape)} must have the same shape")
    a = answers.long()
    in_range = ((a >= 1) & (a <= 9)).all(dim=1)
    keeps = ((puzzles == 0) | (puzzles.to(a.device).long() == a)).all(dim=1)
    units = a[:, _UNITS.to(a.device)]  # [B, 27, 9]
    onehot = torch.nn.functional.one_hot(units.clamp(1, 9) - 1, 9)  # [B, 27, 9, 9]
    complete = (onehot.sum(dim=2) == 1).all(dim=2).all(dim=1)
    return in_range & keeps & complete


def random_symmetries(batch: int, generator: torch.Generator | None = None,
                      device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random validity-preserving symmetries for a batch.

    Returns (cells, digits): `cells` LongTensor [B, 81], new grid b is old grid b at `cells[b]`
    (row swaps within bands, band swaps, column swaps within stacks, stack swaps, transpose);
    `digits` LongTensor [B, 10], a relabeling of 1-9 with digits[:, 0] = 0 (blanks stay blank).
    """
    dev = torch.device("cpu") if generator is None else generator.device
    B = batch

    def perm(*shape):  # random permutations along the last axis
        return torch.rand(*shape, generator=generator, device=dev).argsort(dim=-1)

    rows = (perm(B, 1, 3) * 3)[:, 0, :, None] + perm(B, 3, 3)  # [B, 3 bands, 3] source rows
    cols = (perm(B, 1, 3) * 3)[:, 0, :, None] + perm(B, 3, 3)
    rows, cols = rows.reshape(B, 9), cols.reshape(B, 9)
    straight = rows[:, :, None] * 9 + cols[:, None, :]  # [B, 9, 9]: new[r, c] = old[rows[r], cols[c]]
    flip = torch.rand(B, generator=generator, device=dev) < 0.5  # transpose: new[r, c] = that at [c, r]
    cells = torch.where(flip[:, None, None], straight.transpose(1, 2), straight).reshape(B, 81)
    digits = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=dev), perm(B, 9) + 1], dim=1)
    if device is not None:
        cells, digits = cells.to(device), digits.to(device)
    return cells, digits


def apply_symmetries(grids: torch.Tensor, cells: torch.Tensor, digits: torch.Tensor | None = None) -> torch.Tensor:
    """Apply symmetries from `random_symmetries` to a batch [B, 81]: move cells, then relabel digits
    (pass digits=None for per-cell data that are not digits, like a solver order)."""
    out = torch.gather(grids, 1, cells.to(grids.device))
    if digits is not None:
        out = torch.gather(digits.to(grids.device), 1, out.long()).to(grids.dtype)
    return out


def augment(puzzles: torch.Tensor, solutions: torch.Tensor,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random symmetry per row to puzzles and solutions [B, 81] (0 = blank, 1-9): digit
    relabeling, row swaps within bands, band swaps, column swaps within stacks, stack swaps and
    transpose. Each keeps a puzzle valid, unique and of the same grade."""
    _check_batch(puzzles, "puzzles")
    _check_batch(solutions, "solutions")
    if puzzles.shape != solutions.shape:
        raise ValueError(f"puzzles {tuple(puzzles.shape)} and solutions {tuple(solutions.shape)} "
                         f"must have the same shape")
    if puzzles.numel() and (puzzles.min() < 0 or puzzles.max() > 9 or solutions.min() < 0 or solutions.max() > 9):
        raise ValueError("puzzles and solutions must hold 0 (blank) or 1-9")
    cells, digits = random_symmetries(len(puzzles), generator, device=puzzles.device)
    return apply_symmetries(puzzles, cells, digits), apply_symmetries(solutions, cells, digits)


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to an uncompressed `.npz` with fixed zip timestamps (same arrays, same bytes),
    atomically (`fastmdm.checkpoint.atomic_save_npz`)."""
    from fastmdm.checkpoint import atomic_save_npz  # noqa: PLC0415
    atomic_save_npz(path, arrays)
