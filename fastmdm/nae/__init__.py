"""L&O-NAE-SAT: the latents-and-observations task of Kim et al. (ICML 2025) with not-all-equal observations.

`engine` is the native engine's API (tasks, generation, the exact checker, exact completion counts and
posteriors), `data` the token encoding and datasets, `files` the text and npz formats, `cli` the
`fastmdm nae generate|check` commands; `model`, `train`, `evaluate` and `cli_model` the MDM, its training task
for `fastmdm.training`, the evaluation by decoding order and `fastmdm nae train|eval|solve`. See docs/nae.md.
"""
from fastmdm.nae.engine import MASK_ID, PAPER_SIZES, VALUES, VOCAB_SIZE, Task

__all__ = ["MASK_ID", "PAPER_SIZES", "VALUES", "VOCAB_SIZE", "Task"]
