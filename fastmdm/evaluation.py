"""What every task's evaluation shares: decoding a large set in batches with one random stream."""
from __future__ import annotations

import torch
from tqdm import tqdm

from fastmdm.engine import Trace
from fastmdm.sampling import sample


@torch.no_grad()
def sample_batches(model, inputs: torch.Tensor, *, mask_id: int, seed=0, batch_size=256, progress=False, desc="decode",
                   **kwargs) -> Trace:
    """`fastmdm.sample(model, rows, mask_id=..., generator=g, return_trace=True, **kwargs)` over `inputs` [n, L]
    in batches of `batch_size` (one generator seeded with `seed` for the whole set), as one Trace; nfe is
    the sum over batches."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(int(seed))
    tokens, orders, nfe = [], [], 0
    bar = tqdm(total=len(inputs), desc=desc, unit="row", disable=not progress, leave=False)
    for a in range(0, len(inputs), batch_size):
        x = inputs[a:a + batch_size].to(device)
        tr = sample(model, x, mask_id=mask_id, generator=g, return_trace=True, **kwargs)
        tokens.append(tr.tokens.cpu())
        orders.append(tr.order.cpu())
        nfe += tr.nfe
        bar.update(len(x))
    bar.close()
    if not tokens:
        empty = torch.zeros(0, inputs.shape[1], dtype=torch.long)
        return Trace(empty, empty.clone(), 0)
    return Trace(torch.cat(tokens), torch.cat(orders), nfe)
