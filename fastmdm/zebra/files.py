"""Zebra files: the text format and the .npz format of `fastmdm zebra generate`, and reading either back.

Text: a header line naming the task, then one puzzle per line: its clues separated by ', ', then ' | ' and
the grid, one group of `attributes` characters per house ('.' for a masked cell); '#' lines and blank
lines are skipped. A clue is 'attribute.value relation attribute.value', or 'attribute.value at|notat hHOUSE':

    # fastmdm zebra houses=3 attributes=3 max_clues=9 logic_only=0 seed=0
    0.2 same 1.0, 2.1 immleft 0.0, 1.2 notat h0 | 201 012 120

npz: "tokens" int8 [n, L], the task's "houses", "attributes", "max_clues", "logic_only", the data "seed", and
(from `generate`) the ordered solve "order", "technique", "clue" int8 [n, m*n]. Written with fixed zip
timestamps, so the same data give the same bytes.
"""
from __future__ import annotations

import os

import numpy as np

from fastmdm.checkpoint import atomic_save_npz
from fastmdm.zebra.data import Clue, decode, encode
from fastmdm.zebra.engine import MASK_ID, RELATIONS, Task, as_sequences

HEADER = "# fastmdm zebra"
_TASK_KEYS = ("houses", "attributes", "max_clues", "logic_only")
_EXTRA = ("order", "technique", "clue")


def header(task: Task, seed: int | None = None) -> str:
    keys = " ".join(f"{k}={int(getattr(task, k))}" for k in _TASK_KEYS)
    return f"{HEADER} {keys}" + (f" seed={seed}" if seed is not None else "")


def parse_header(line: str) -> tuple[Task, int | None]:
    """(task, seed or None) from a header line; ValueError if it is malformed."""
    fields = {}
    for item in line[len(HEADER):].split():
        key, eq, value = item.partition("=")
        if not eq or not value.isdigit():
            raise ValueError(f"header field {item!r} is not key=integer")
        fields[key] = int(value)
    missing = [k for k in _TASK_KEYS[:3] if k not in fields]
    if missing:
        raise ValueError(f"header lacks {', '.join(missing)}")
    unknown = sorted(set(fields) - set(_TASK_KEYS) - {"seed"})
    if unknown:
        raise ValueError(f"header has unknown fields {', '.join(unknown)}")
    if fields.get("logic_only", 0) not in (0, 1):
        raise ValueError("header field logic_only must be 0 or 1")
    return Task(fields["houses"], fields["attributes"], fields["max_clues"], bool(fields.get("logic_only", 0))), \
        fields.get("seed")


def format_grid(grid: np.ndarray) -> str:
    return " ".join("".join("." if v == MASK_ID else str(int(v)) for v in house) for house in grid)


def format_lines(tokens, task: Task, seed: int | None = None) -> str:
    """The text format: the header, then one '<clues> | <grid>' line per puzzle."""
    rows = (", ".join(c.text() for c in p.clues) + " | " + format_grid(p.grid) + "\n" for p in decode(tokens, task))
    return header(task, seed) + "\n" + "".join(rows)


def _parse_item(text: str, where: str) -> tuple[int, int]:
    a, dot, v = text.partition(".")
    if not dot or not a.isdigit() or not v.isdigit():
        raise ValueError(f"{where}item {text!r} is not attribute.value (e.g. 1.3)")
    return int(a), int(v)


def parse_line(text: str, task: Task, line: int | None = None) -> np.ndarray:
    """One text line as int8 [L]."""
    where = f"line {line}: " if line is not None else ""
    clue_text, bar, grid_text = text.partition("|")
    if not bar:
        raise ValueError(f"{where}expected '<clues> | <grid>', found no '|'")
    clues = []
    for i, part in enumerate(p.strip() for p in clue_text.split(",")):
        if not part:
            if clue_text.strip():
                raise ValueError(f"{where}clue {i} is empty (two commas in a row?)")
            continue
        words = part.split()
        if len(words) != 3 or words[1] not in RELATIONS:
            raise ValueError(f"{where}clue {i} {part!r} is not 'a.v RELATION a.v' or 'a.v at|notat hH' with RELATION "
                             f"one of {', '.join(RELATIONS)}")
        a1, v1 = _parse_item(words[0], where)
        rel = RELATIONS.index(words[1])
        if words[1] in ("at", "notat"):
            if not (words[2].startswith("h") and words[2][1:].isdigit()):
                raise ValueError(f"{where}clue {i} {part!r}: the house must be written hN (e.g. h2)")
            clues.append(Clue(rel, a1, v1, int(words[2][1:]), -1))
        else:
            clues.append(Clue(rel, a1, v1, *_parse_item(words[2], where)))
    houses = grid_text.split()
    if len(houses) != task.houses or any(len(h) != task.attributes for h in houses):
        raise ValueError(f"{where}the grid must be {task.houses} groups of {task.attributes} characters (one per "
                         f"house), got {grid_text.strip()!r}")
    grid = np.zeros((task.houses, task.attributes), np.int64)
    for h, group in enumerate(houses):
        for a, ch in enumerate(group):
            if ch == ".":
                grid[h, a] = MASK_ID
            elif ch.isdigit() and int(ch) < task.houses:
                grid[h, a] = int(ch)
            else:
                raise ValueError(f"{where}grid character {ch!r} (house {h}, attribute {a}); use 0..{task.houses - 1} "
                                 "and '.' (masked)")
    try:
        return encode([(clues, grid)], task)[0]
    except ValueError as e:
        raise ValueError(f"{where}{str(e).removeprefix('puzzle 0: ')}") from None


def read_text(path_or_lines, task: Task | None = None) -> tuple[np.ndarray, Task, list[int]]:
    """Puzzles from a text file (path) or an iterable of lines: (int8 [n, L], task, line numbers). The header
    gives the task; `task` is needed when there is no header, and must match it when there is."""
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
            raise ValueError(f"line {i}: a puzzle before any '{HEADER} ...' header line, and no task was given")
        rows.append(parse_line(text, task, line=i))
        numbers.append(i)
    if task is None:
        raise ValueError(f"no puzzles and no '{HEADER} ...' header")
    tokens = np.stack(rows) if rows else np.zeros((0, task.length), np.int8)
    return tokens, task, numbers


def save_npz(path, tokens, task: Task, seed: int | None = None, **extra) -> None:
    """Write the npz format atomically with fixed zip timestamps; `extra` may hold order, technique, clue."""
    arr, _ = as_sequences(tokens, task, "tokens")
    arrays = {"tokens": arr}
    arrays.update({k: np.array(int(getattr(task, k)), np.uint64) for k in _TASK_KEYS})
    if seed is not None:
        arrays["seed"] = np.array(seed, np.uint64)
    for k, v in extra.items():
        if k not in _EXTRA:
            raise ValueError(f"unknown npz array {k!r}; expected one of {', '.join(_EXTRA)}")
        arrays[k] = np.ascontiguousarray(v, np.int8)
    atomic_save_npz(path, arrays)


def load_npz(path, task: Task | None = None) -> tuple[np.ndarray, Task]:
    """(tokens int8 [n, L], task) from the npz format."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("tokens", *_TASK_KEYS) if k not in z.files]
        if missing:
            raise ValueError(f"not a Zebra file of `fastmdm zebra generate` (no {', '.join(missing)})")
        found = Task(*(int(z[k]) for k in _TASK_KEYS[:3]), logic_only=bool(int(z["logic_only"])))
        tokens = z["tokens"]
    if task is not None and found != task:
        raise ValueError(f"the file's task ({found.describe()}) differs from the one given ({task.describe()})")
    arr, _ = as_sequences(tokens, found, "tokens")
    return arr, found


def is_npz(path) -> bool:
    """Whether `path` starts like a zip archive (an .npz), whatever its suffix."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


__all__ = ["HEADER", "header", "parse_header", "format_grid", "format_lines", "parse_line", "read_text", "save_npz",
           "load_npz", "is_npz"]
