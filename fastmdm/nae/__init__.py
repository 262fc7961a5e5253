"""L&O-NAE-SAT: the latents-and-observations task of Kim et al. (ICML 2025) with not-all-equal observations.

`engine` is the native engine's API (tasks, generation, the exact checker, exact completion counts and
posteriors), `data` the token encoding and datasets, `files` the text and npz formats, `cli` the
`fastmdm nae` commands. Training and evaluation of MDMs on it are not built yet. See docs/nae.md.
"""
from fastmdm.nae.engine import MASK_ID, PAPER_SIZES, VALUES, VOCAB_SIZE, Task

__all__ = ["MASK_ID", "PAPER_SIZES", "VALUES", "VOCAB_SIZE", "Task"]
