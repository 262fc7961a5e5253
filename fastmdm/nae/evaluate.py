"""Evaluate an L&O-NAE-SAT MDM: unconditional generation in each decoding order, checked exactly.

Protocol (the paper's Table 1 does not write its own down; this is ours, docs/nae.md): every position of n
sequences starts masked and `fastmdm.sample` fills them, one position per model call by default, drawing
each token from the model's distribution at `temperature` (1 by default: a sample of the model, not its
mode). The strategy only chooses *where* to write next: "random" is the vanilla MDM order; confidence,
margin and entropy are the adaptive ones. The paper's metric is the observation accuracy: per sequence, the
fraction of observation tokens equal to the NAE predicate of the sequence's own latents
(`fastmdm.nae.engine.check`); always writing 1 would score 75%.

Per order the table also says where the order puts the latents: `latents_first`, the share of latents among
the first D positions filled, D the latents a row decodes (a random order gives D over the positions decoded),
and `latent_rank`, the mean step at which a latent was filled as a fraction of the positions decoded.

`given` > 0 turns generation into infilling: the rows start from test sequences with each position visible
with that probability (`starting_rows`), and `decoded_observation_acc` is the accuracy on the observation
tokens the model wrote. Why this matters: NAE is symmetric under flipping every latent, so from an all-masked
row every latent's exact conditional stays 1/2 until one latent is written, and a margin (or confidence, or
entropy) order writes every observation before any latent; visible tokens break that symmetry.

`token_accuracy` measures the model in one call on random
masks of fresh sequences, by token type and masking rate: the "train for the worst" view of which
subproblems it gets wrong.
"""
from __future__ import annotations

import numpy as np
import torch

from fastmdm.evaluation import plot_orders, sample_batches
from fastmdm.nae import engine
from fastmdm.nae.data import TEST_SEED
from fastmdm.stats import mean_interval, wilson_interval

DEFAULT_STRATEGIES = ("random", "confidence", "margin", "entropy")


def starting_rows(task: engine.Task, n: int, given: float = 0.0, seed: int = 0) -> torch.Tensor:
    """The rows decoding starts from, LongTensor [n, N+P]: all masked (`given` 0: unconditional generation), or
    the first n test sequences (`data.TEST_SEED`) with each position kept visible with probability `given`
    (infilling: what is visible is consistent, the rest is masked)."""
    if not 0.0 <= given < 1.0:
        raise ValueError(f"given: the share of visible positions must be in [0, 1), got {given!r}")
    if given == 0.0:
        return torch.full((n, task.length), engine.MASK_ID, dtype=torch.long)
    x0 = torch.from_numpy(engine.generate(n, task, TEST_SEED)).long()
    hidden = torch.rand(x0.shape, generator=torch.Generator().manual_seed(int(seed) + 1)) >= given
    return x0.masked_fill(hidden, engine.MASK_ID)


def generate_samples(model, task: engine.Task, n: int, *, strategy="margin", k=None, threshold=None,
                     temperature=1.0, seed=0, batch_size=256, progress=False, given=0.0):
    """`n` sequences decoded from `starting_rows(task, n, given, seed)`: a `fastmdm.Trace` (tokens [n, N+P],
    order: the step each position was filled, -1 where it was given; nfe)."""
    x = starting_rows(task, n, given, seed)
    return sample_batches(model, x, mask_id=engine.MASK_ID, strategy=strategy, k=k, threshold=threshold,
                          temperature=temperature, seed=seed, batch_size=batch_size, progress=progress,
                          desc=f"nae {strategy}")


def summarize(trace, task: engine.Task, strategy: str, truth=None) -> dict:
    """One table row from a decoding trace (given positions have order -1 and count as filled first). With the
    sequences infilling started from (`truth`, [n, N+P]), the row also gives the share of decoded latents and of
    decoded observations equal to them: the per-token-type view. A latent that what was visible does not
    determine can differ from `truth` in a consistent answer, so these are lower bounds on what is right."""
    tokens = trace.tokens.numpy()
    n = len(tokens)
    r = engine.check(tokens, task)
    consistent = int(r.ok.sum())
    order = trace.order.numpy()
    decoded = order >= 0
    # rank among the decoded positions (0 = filled first; given positions rank last and are left out)
    rank = np.argsort(np.argsort(np.where(decoded, order, np.iinfo(order.dtype).max), axis=1, kind="stable"),
                      axis=1, kind="stable")
    lat, lat_dec = rank[:, task.latent_positions], decoded[:, task.latent_positions]
    n_lat = lat_dec.sum(axis=1, keepdims=True)                       # latents each row decodes
    early = (lat < n_lat) & lat_dec                                  # decoded among the first n_lat filled
    lat_share = early.sum() / max(int(n_lat.sum()), 1)
    lat_rank = (lat / np.maximum(decoded.sum(axis=1, keepdims=True), 1))[lat_dec]
    obs_ok = r.ok_tokens[:, task.observation_positions]
    obs_decoded = decoded[:, task.observation_positions]
    match = {}
    if truth is not None:
        same = tokens == np.asarray(truth)
        for name, pos in (("latent", task.latent_positions), ("observation", task.observation_positions)):
            dec = decoded[:, pos]
            match[f"decoded_{name}_match"] = float(same[:, pos][dec].mean()) if dec.any() else None
    return {
        "strategy": strategy, "n": n, **match,
        "observation_acc": float(r.observation_accuracy.mean()) if n else 0.0,
        "observation_acc_ci95": list(mean_interval(r.observation_accuracy)),
        "decoded_observation_acc": float(obs_ok[obs_decoded].mean()) if obs_decoded.any() else None,
        # the share of the decoded observations written as 1 (3/4 under the task's distribution)
        "decoded_observation_ones": (float(tokens[:, task.observation_positions][obs_decoded].mean())
                                     if obs_decoded.any() else None),
        "consistent": consistent / max(n, 1), "consistent_ci95": list(wilson_interval(consistent, n)),
        "latents_first": float(lat_share),
        "latent_rank": float(lat_rank.mean()) if lat_rank.size else 0.0,
        "calls_per_sequence": float((order.max(axis=1) + 1).mean()) if n else 0.0,
    }


def evaluate(model, task: engine.Task, n: int, *, strategies=DEFAULT_STRATEGIES, k=None, threshold=None,
             temperature=1.0, seed=0, batch_size=256, progress=False, given=0.0) -> list[dict]:
    """One row per strategy (`summarize`'s fields), each from the same `n` starting rows and seed."""
    rows = []
    truth = engine.generate(n, task, TEST_SEED) if given > 0 else None
    for s in strategies:
        tr = generate_samples(model, task, n, strategy=s, k=k, threshold=threshold, temperature=temperature,
                              seed=seed, batch_size=batch_size, progress=progress, given=given)
        rows.append({**summarize(tr, task, s, truth), "k": k or 1, "threshold": threshold, "temperature": temperature,
                     "given": given})
    return rows


@torch.no_grad()
def token_accuracy(model, task: engine.Task, n: int = 1000, rates=(0.1, 0.3, 0.5, 0.7, 0.9), seed=0,
                   batch_size=256) -> list[dict]:
    """The model's one-call accuracy (argmax) on masked latents and masked observations of `n` test
    sequences, every position masked with probability `rate`; one row per rate. A masked latent can be
    undetermined by what is visible (then no predictor beats 50%), an observation whose clause is visible is
    determined."""
    device = next(model.parameters()).device
    x0 = torch.from_numpy(engine.generate(n, task, TEST_SEED)).long()
    g = torch.Generator().manual_seed(int(seed))
    lat_pos = torch.zeros(task.length, dtype=torch.bool)
    lat_pos[task.latent_positions] = True
    clauses = torch.from_numpy(np.asarray(task.clauses, dtype=np.int64))
    rows = []
    for rate in rates:
        masked = torch.rand(x0.shape, generator=g) < rate
        hits = {"latent": [0, 0], "observation": [0, 0], "observation_determined": [0, 0]}
        for a in range(0, n, batch_size):
            x, m = x0[a:a + batch_size], masked[a:a + batch_size]
            pred = model(x.masked_fill(m, engine.MASK_ID).to(device))[..., :2].argmax(-1).cpu()
            right = pred == x
            visible_clause = ~m[:, clauses].any(-1)                         # [b, P]: the clause's latents visible
            det = torch.zeros_like(m)
            det[:, task.observation_positions] = visible_clause
            for name, where in (("latent", lat_pos), ("observation", ~lat_pos)):
                sel = m & where
                hits[name][0] += int((right & sel).sum())
                hits[name][1] += int(sel.sum())
            sel = m & det
            hits["observation_determined"][0] += int((right & sel).sum())
            hits["observation_determined"][1] += int(sel.sum())
        rows.append({"rate": rate, **{f"{k}_acc": (h / c if c else None) for k, (h, c) in hits.items()},
                     **{f"{k}_count": c for k, (_, c) in hits.items()}})
    return rows


def _pct(v, digits: int = 2) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}%"


def format_table(rows: list[dict], task: engine.Task) -> str:
    """A markdown table of `evaluate`'s rows."""
    infill = any(r.get("decoded_latent_match") is not None for r in rows)
    extra = " decoded latents = test's | decoded observations = test's |" if infill else ""
    head = ("| order | observation accuracy (95% CI) | decoded observations right | decoded observations = 1 | "
            f"consistent sequences (95% CI) | latents among the first {task.latents} filled | mean latent step / L "
            f"| calls |{extra}\n|---|---|---|---|---|---|---|---|{'---|---|' if infill else ''}")
    lines = [head]
    for r in rows:
        lo, hi = r["observation_acc_ci95"]
        clo, chi = r["consistent_ci95"]
        lines.append(f"| {r['strategy']} | {100 * r['observation_acc']:.2f}% ({100 * lo:.2f}-{100 * hi:.2f}) | "
                     f"{_pct(r.get('decoded_observation_acc'))} | {_pct(r.get('decoded_observation_ones'), 1)} | "
                     f"{100 * r['consistent']:.1f}% ({100 * clo:.1f}-{100 * chi:.1f}) | "
                     f"{100 * r['latents_first']:.1f}% | {r['latent_rank']:.3f} | {r['calls_per_sequence']:.1f} |"
                     + (f" {_pct(r.get('decoded_latent_match'))} | {_pct(r.get('decoded_observation_match'))} |"
                        if infill else ""))
    return "\n".join(lines)


def format_token_table(rows: list[dict]) -> str:
    lines = ["| masking rate | masked latents right | masked observations right | of them, with the clause "
             "visible |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rate']:g} | {_pct(r['latent_acc'], 1)} | {_pct(r['observation_acc'], 1)} | "
                     f"{_pct(r['observation_determined_acc'], 1)} |")
    return "\n".join(lines)


def plot(rows: list[dict], path, title: str = "") -> None:
    """Bar chart of observation accuracy per order, with 95% intervals and the 75% always-1 line."""
    plot_orders(rows, "observation_acc", path, ylabel="observation tokens correct (%)", ylim=(50, 101),
                title=title or "L&O-NAE-SAT: unconditional generation by decoding order",
                reference=(75, "always 1 (75%)"))
