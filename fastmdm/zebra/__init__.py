"""Zebra (Einstein) puzzles: m houses x n attributes, minimal unique clue sets, after Shah et al. (2024).

`engine` is the native engine's API (tasks, generation, the exact checker, the solver with its deduction
order), `data` the token encoding and datasets, `files` the text and npz formats, `cli` the `fastmdm zebra`
commands. Training and evaluation of MDMs on it are not built yet. See docs/zebra.md.
"""
from fastmdm.zebra.engine import MASK_ID, PAD_ID, RELATIONS, TECHNIQUES, VOCAB_SIZE, Task

__all__ = ["MASK_ID", "PAD_ID", "RELATIONS", "TECHNIQUES", "VOCAB_SIZE", "Task"]
