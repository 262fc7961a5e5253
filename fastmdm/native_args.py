"""What the Python APIs over the native engine share (`fastmdm.nae.engine`, `fastmdm.zebra.engine`): argument
checks worded the same way, and generation in chunks with an optional progress bar."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def threads(value: int | None) -> int:
    """The native `threads` argument: 0 for None (all hardware threads), else a positive integer."""
    if value is None:
        return 0
    if not is_int(value) or value < 1:
        raise ValueError(f"threads must be a positive integer or None (all cores), got {value!r}")
    return int(value)


def seed(value, name: str) -> int:
    if not is_int(value) or not 0 <= value < 2**64:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def generation(n, seed_value, start, length: int) -> tuple[int, int, int]:
    """(n, seed, start) of a generation call, checked: n >= 0, seed in [0, 2**64), start in [0, 2**63), and
    n * length tokens at most 16 GiB."""
    if not is_int(n) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    s = seed(seed_value, "seed")
    if not is_int(start) or not 0 <= start < 2**63:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    if int(n) * length > 1 << 34:
        raise ValueError(f"n * length = {int(n) * length} tokens (> 16 GiB); generate in pieces with start=")
    return int(n), s, int(start)


@contextmanager
def chunks(n: int, size: int, progress: bool, desc: str, unit: str):
    """Yields an iterator of (a, b) slices covering range(n) in pieces of `size`, updating a tqdm bar on
    stderr after each piece when `progress`."""
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415 (only for the progress bar)
        bar = tqdm(total=n, desc=desc, unit=unit, smoothing=0.1)

    def pieces():
        for a in range(0, n, size):
            b = min(n, a + size)
            yield a, b
            if bar is not None:
                bar.update(b - a)
    try:
        yield pieces()
    finally:
        if bar is not None:
            bar.close()
