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


def plot_orders(rows: list[dict], key: str, path, *, ylabel: str, title: str, ylim=(0, 101), reference=None) -> None:
    """Bar chart of `row[key]` (a share) per decoding order with its 95% interval `row[key + "_ci95"]`, in percent;
    random order grey, the adaptive orders blue. `reference` (value in percent, label) draws a dashed line."""
    import matplotlib  # noqa: PLC0415 (plotting is optional)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = [r["strategy"] for r in rows]
    acc = [100 * r[key] for r in rows]
    lo = [a - 100 * r[key + "_ci95"][0] for a, r in zip(acc, rows)]
    hi = [100 * r[key + "_ci95"][1] - a for a, r in zip(acc, rows)]
    ax.bar(names, acc, yerr=[lo, hi], capsize=4, color=["#999999" if s == "random" else "#3b7dd8" for s in names])
    if reference is not None:
        ax.axhline(reference[0], color="k", ls="--", lw=1, label=reference[1])
        ax.legend(loc="lower right", fontsize=8)
    for i, v in enumerate(acc):
        ax.text(i, v + 0.5, f"{v:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
