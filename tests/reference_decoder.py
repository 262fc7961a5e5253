"""An independent, deliberately plain re-derivation of fastmdm's decoding semantics (docs/decoding.md).

One row at a time, one position at a time, float64 probabilities: slow and obviously right. The engine in
fastmdm.engine is vectorized; tests compare the two token for token at temperature 0.
"""
from __future__ import annotations

import math

import torch


def position_stats(logit_row: torch.Tensor, mask_id: int, strategy: str):
    """(token, score) for one position at temperature 0."""
    z = logit_row.double().clone()
    z[mask_id] = -math.inf
    p = torch.softmax(z, dim=0)
    token = int(torch.argmax(z))
    if strategy == "confidence":
        score = float(p[token])
    elif strategy == "margin":
        top = sorted(p.tolist(), reverse=True)
        score = top[0] - (top[1] if len(top) > 1 else 0.0)
    elif strategy == "entropy":
        score = sum(q * math.log(q) for q in p.tolist() if q > 0)
    else:
        raise ValueError(strategy)
    return token, score


def reference_decode(model, x, mask_id, strategy, *, k=None, steps=None, threshold=None, block_size=None,
                     attention_mask=None, random_scores=None):
    """Returns (tokens, order, nfe). For strategy 'random', `random_scores(n)` supplies the n uniform scores
    of a step, in row-major order of the scored positions (the engine's documented draw order)."""
    x = x.clone()
    B, L = x.shape
    order = torch.full((B, L), -1, dtype=torch.long)
    groups = []
    for b in range(B):
        fill = [i for i in range(L)
                if int(x[b, i]) == mask_id and (attention_mask is None or int(attention_mask[b, i]))]
        size = block_size or max(len(fill), 1)
        groups.append([fill[j:j + size] for j in range(0, len(fill), size)])
    state = [{"group": -1, "step": 0, "size": 0} for _ in range(B)]
    if k is None and steps is None and threshold is None:
        k = 1
    nfe = 0
    while True:
        plans = []
        for b in range(B):
            gi = next((g for g, grp in enumerate(groups[b]) if any(int(x[b, i]) == mask_id for i in grp)), None)
            if gi is None:
                plans.append(None)
                continue
            remaining = [i for i in groups[b][gi] if int(x[b, i]) == mask_id]
            st = state[b]
            if gi != st["group"]:
                st.update(group=gi, step=0, size=len(remaining))
            if k is not None:
                count = min(k, len(remaining))
            elif steps is not None:
                per = steps // len(groups[b])
                if st["step"] >= per - 1:
                    count = len(remaining)
                else:
                    count = st["size"] // per + (1 if st["step"] < st["size"] % per else 0)
                st["step"] += 1
            else:
                count = None  # threshold
            plans.append((remaining, count))
        if all(p is None for p in plans):
            break
        if all(p is None or p[1] == 0 for p in plans):
            continue
        with torch.no_grad():
            logits = model(x) if attention_mask is None else model(x, attention_mask=attention_mask)
        logits = logits if isinstance(logits, torch.Tensor) else logits.logits
        scored = [(b, i) for b in range(B) if plans[b] and plans[b][1] != 0 for i in plans[b][0]]
        rnd = random_scores(len(scored)).tolist() if strategy == "random" else None
        stats = {}
        for n, (b, i) in enumerate(scored):
            if strategy == "random":
                tok, _ = position_stats(logits[b, i], mask_id, "confidence")
                stats[(b, i)] = (tok, rnd[n])
            else:
                stats[(b, i)] = position_stats(logits[b, i], mask_id, strategy)
        for b in range(B):
            if not plans[b] or plans[b][1] == 0:
                continue
            remaining, count = plans[b]
            ranked = sorted(remaining, key=lambda i: (-stats[(b, i)][1], i))
            if count is None:
                chosen = [i for i in remaining if stats[(b, i)][1] >= threshold] or ranked[:1]
                chosen = set(chosen) | {ranked[0]}
            else:
                chosen = ranked[:count]
            for i in chosen:
                x[b, i] = stats[(b, i)][0]
                order[b, i] = nfe
        nfe += 1
    return x, order, nfe
