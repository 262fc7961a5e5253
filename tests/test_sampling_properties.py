"""Properties of fastmdm.sample on random batches (hypothesis), sampling statistics and determinism."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toy import FixedLogits, LogitsOnly, ToyMDM

import fastmdm
from fastmdm import ops, plans


@st.composite
def problems(draw):
    B = draw(st.integers(1, 4))
    L = draw(st.integers(1, 12))
    V = draw(st.integers(2, 9))
    mask_id = draw(st.integers(0, V - 1))
    seed = draw(st.integers(0, 2 ** 16))
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (B, L), generator=g)
    masked = torch.rand(B, L, generator=g) < draw(st.floats(0, 1))
    x[masked] = mask_id
    am = (torch.rand(B, L, generator=g) < 0.85).long() if draw(st.booleans()) else None
    strategy = draw(st.sampled_from(["random", "confidence", "margin", "entropy"]))
    kind = draw(st.sampled_from(["k", "steps", "threshold"]))
    block = draw(st.one_of(st.none(), st.integers(1, 5)))
    if kind == "k":
        sched = dict(k=draw(st.integers(1, 4)))
    elif kind == "steps":
        sched = dict(steps=draw(st.integers(L, L + 3)))  # always at least the number of blocks
    else:
        sched = dict(threshold=-0.5 if strategy == "entropy" else draw(st.floats(0.05, 0.95)))
    temperature = draw(st.sampled_from([0.0, 0.0, 1.0]))
    return dict(x=x, am=am, V=V, mask_id=mask_id, seed=seed, strategy=strategy, sched=sched, block=block,
                temperature=temperature, noise=draw(st.sampled_from([0.0, 0.5])))


def run(p):
    model = ToyMDM(vocab=p["V"], seed=p["seed"] % 7, d=8, max_len=16)
    batch = p["x"] if p["am"] is None else {"input_ids": p["x"], "attention_mask": p["am"]}
    tr = fastmdm.sample(model, batch, strategy=p["strategy"], mask_id=p["mask_id"], block_size=p["block"],
                        temperature=p["temperature"], score_noise=p["noise"],
                        generator=torch.Generator().manual_seed(p["seed"]), return_trace=True, **p["sched"])
    fillable = p["x"] == p["mask_id"]
    if p["am"] is not None:
        fillable &= p["am"].bool()
    return model, tr, fillable


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_only_fillable_masks_change_and_every_one_is_filled_with_a_real_token(p):
    _, tr, fillable = run(p)
    assert torch.equal(tr.tokens[~fillable], p["x"][~fillable])
    assert (tr.tokens[fillable] != p["mask_id"]).all()
    assert ((tr.order >= 0) == fillable).all()
    assert ((tr.tokens >= 0) & (tr.tokens < p["V"])).all()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_nfe_stays_within_the_schedules_bounds(p):
    _, tr, fillable = run(p)
    n = fillable.sum(-1)
    most = int(n.max()) if n.numel() else 0
    assert tr.nfe <= most  # every model call fills at least one position
    if most == 0:
        assert tr.nfe == 0
        return
    assert tr.nfe >= 1
    if "k" in p["sched"] and p["block"] is None:
        assert tr.nfe == max(math.ceil(int(c) / p["sched"]["k"]) for c in n)
    if "steps" in p["sched"]:
        assert tr.nfe <= p["sched"]["steps"]
    if tr.nfe:
        assert int(tr.order.max()) == tr.nfe - 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_replaying_the_trace_shows_each_step_chose_the_top_scores(p):
    if p["strategy"] == "random" or p["temperature"] > 0 or p["noise"] > 0 or "threshold" in p["sched"]:
        p = dict(p, strategy="margin" if p["strategy"] == "random" else p["strategy"], temperature=0.0, noise=0.0,
                 sched=dict(k=2))
    model, tr, fillable = run(p)
    x = p["x"].clone()
    for step in range(tr.nfe):
        with torch.no_grad():
            logits = model(x) if p["am"] is None else model(x, attention_mask=p["am"])
        chosen = tr.order == step
        for b in range(x.shape[0]):
            still = fillable[b] & ((tr.order[b] >= step) | (tr.order[b] < 0))
            if not chosen[b].any():
                continue
            idx = still.nonzero().squeeze(-1)
            tok, sc = ops.token_stats_reference(logits[b, idx], score=p["strategy"], mask_id=p["mask_id"])
            picked = chosen[b, idx]
            assert torch.equal(tr.tokens[b, idx][picked], tok[picked])
            # chosen positions are not beaten by any unchosen position of the same group
            groups = plans.groups_by_rank(fillable[b:b + 1], p["block"])[0, idx]
            same = groups == groups[picked].min()
            if (~picked & same).any():
                assert sc[picked].min() >= sc[~picked & same].max() - 1e-6
        x = torch.where(chosen, tr.tokens, x)


def chi_square_p(counts, probs):
    from scipy.stats import chisquare

    expected = probs * counts.sum()
    return chisquare(counts.numpy(), expected.numpy()).pvalue


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_tokens_at_temperature_follow_softmax_of_the_logits(temperature):
    row = torch.tensor([1.0, 0.2, -0.5, 2.0, 0.0, -3.0, 0.7])
    mask_id = 6
    model = FixedLogits(row)
    x = torch.full((4000, 1), mask_id)
    out = fastmdm.sample(model, x, mask_id=mask_id, strategy="random", temperature=temperature,
                         generator=torch.Generator().manual_seed(1234))
    counts = torch.bincount(out[:, 0], minlength=7).float()
    assert counts[mask_id] == 0
    probs = torch.softmax(row[:mask_id] / temperature, 0)
    assert chi_square_p(counts[:mask_id], probs) > 1e-3
    # and the test has power: the wrong temperature is rejected
    wrong = torch.softmax(row[:mask_id] / (temperature * 2), 0)
    assert chi_square_p(counts[:mask_id], wrong) < 1e-6


def test_a_seeded_generator_makes_sampling_reproducible():
    model = ToyMDM(vocab=9, seed=3)
    x = torch.full((3, 12), 8)
    kw = dict(mask_id=8, strategy="random", temperature=1.0, score_noise=0.5, k=2)
    a = fastmdm.sample(model, x, generator=torch.Generator().manual_seed(7), **kw)
    b = fastmdm.sample(model, x, generator=torch.Generator().manual_seed(7), **kw)
    c = fastmdm.sample(model, x, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_score_noise_changes_the_order_but_not_what_fills_when_the_model_ignores_context():
    row = torch.randn(6, generator=torch.Generator().manual_seed(0))
    model = FixedLogits(row)
    x = torch.full((2, 30), 5)
    a = fastmdm.sample(model, x, mask_id=5, strategy="margin", return_trace=True)
    b = fastmdm.sample(model, x, mask_id=5, strategy="margin", score_noise=0.5, return_trace=True,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.tokens, b.tokens)
    assert a.order[0].tolist() == list(range(30))  # equal scores: left to right
    assert b.order[0].tolist() != list(range(30))


def test_scores_are_float32_whatever_the_logits_dtype():
    logits = torch.randn(5, 11).to(torch.bfloat16)
    for score in ("confidence", "margin", "entropy", "none"):
        tok, sc = ops.token_stats(logits, score=score)
        assert sc.dtype == torch.float32 and tok.dtype == torch.int64


@pytest.mark.parametrize("hidden_path", [True, False])
def test_finished_rows_are_left_out_of_the_model_call_and_the_answer_is_unchanged(hidden_path):
    """Rows with 1, 3 and 5 masks, one fill per step: the model sees 3, 2, 2, 1, 1 rows (with their own padding
    masks), and each row decodes exactly as it does alone."""
    model = ToyMDM(vocab=9, seed=1) if hidden_path else LogitsOnly(ToyMDM(vocab=9, seed=1))
    seen = []
    inner = getattr(model, "forward_hidden" if hidden_path else "forward")

    def spy(x, attention_mask=None):
        seen.append((x.shape[0], None if attention_mask is None else attention_mask.clone()))
        return inner(x, attention_mask)
    if hidden_path:
        model.forward_hidden = spy
    else:
        model.forward = spy
    x = torch.randint(0, 8, (3, 8), generator=torch.Generator().manual_seed(0))
    x[0, 2] = x[1, :3] = x[2, 1:6] = 8
    am = torch.ones_like(x)
    am[1, 7] = 0
    tr = fastmdm.sample(model, {"input_ids": x, "attention_mask": am}, mask_id=8, strategy="margin", k=1,
                        return_trace=True)
    assert [n for n, _ in seen] == [3, 2, 2, 1, 1] and tr.nfe == 5
    assert torch.equal(seen[1][1], am[1:]) and torch.equal(seen[3][1], am[2:])
    for i in range(3):
        alone = fastmdm.sample(model, {"input_ids": x[i:i + 1], "attention_mask": am[i:i + 1]}, mask_id=8,
                               strategy="margin", k=1)
        assert torch.equal(alone[0], tr.tokens[i])
    seen.clear()
    whole = fastmdm.sample(model, {"input_ids": x, "attention_mask": am}, mask_id=8, strategy="margin", k=1,
                           skip_finished_rows=False)
    assert [n for n, _ in seen] == [3] * 5 and torch.equal(whole, tr.tokens)
