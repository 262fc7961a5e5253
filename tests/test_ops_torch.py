"""The torch backend of fastmdm.ops against the readable references it must equal."""

import pytest
import torch

from fastmdm import ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("score", ["confidence", "margin", "entropy", "none"])
@pytest.mark.parametrize("N,V", [(1, 2), (7, 13), (33, 1000)])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_eager_token_stats_equal_the_reference(dtype, score, N, V, temperature):
    g = torch.Generator().manual_seed(N * V)
    logits = (torch.randn(N, V, generator=g) * 3).to(dtype)
    logits[0, -1] = float("nan") if N > 1 else logits[0, -1]  # a NaN row (when there are several rows)
    mask_id = V - 1 if V > 2 else None
    kw = dict(score=score, temperature=temperature, mask_id=mask_id)
    t_ref, s_ref = ops.token_stats_reference(logits, generator=torch.Generator().manual_seed(1), **kw)
    before = logits.clone()
    t, s = ops.token_stats(logits, backend="torch", generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(logits.isnan(), before.isnan()) and torch.equal(logits.nan_to_num(), before.nan_to_num())
    ok = ~torch.isnan(s_ref)
    assert torch.equal(torch.isnan(s), ~ok)
    assert torch.equal(t[ok], t_ref[ok])
    torch.testing.assert_close(s[ok], s_ref[ok], rtol=1e-5, atol=1e-6)
    if mask_id is not None:
        assert (t != mask_id).all()


def test_overwrite_reuses_the_callers_buffer_and_gives_the_same_answer():
    logits = torch.randn(5, 50)
    want = ops.token_stats(logits.clone(), score="entropy", mask_id=3)
    got = ops.token_stats(logits, score="entropy", mask_id=3, overwrite=True)
    assert torch.equal(want[0], got[0]) and torch.allclose(want[1], got[1])
    assert logits[0, 3] <= -1e30  # it did write into the buffer


def test_linear_token_stats_equal_the_reference_through_the_head():
    g = torch.Generator().manual_seed(0)
    h, w, b = torch.randn(9, 16, generator=g), torch.randn(40, 16, generator=g), torch.randn(40, generator=g)
    for score in ("confidence", "margin", "entropy"):
        t_ref, s_ref = ops.linear_token_stats_reference(h, w, b, score=score, mask_id=0)
        t, s = ops.linear_token_stats(h, w, b, score=score, mask_id=0, backend="torch")
        assert torch.equal(t, t_ref)
        torch.testing.assert_close(s, s_ref)


def test_top_n_selection_ranks_within_each_row_and_breaks_ties_to_the_left():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1], [0.3, 0.3, 0.3, 0.3]])
    eligible = torch.tensor([[True, True, True, False], [True, False, True, True]])
    got = ops.select_positions(scores, eligible, counts=torch.tensor([2, 2]), backend="torch")
    assert got.tolist() == [[True, True, False, False], [True, False, True, False]]


def test_threshold_selection_keeps_the_best_even_below_the_threshold():
    scores = torch.tensor([[0.2, 0.4, 0.1], [0.95, 0.91, 0.2], [0.99, 0.5, 0.99]])
    eligible = torch.tensor([[True, True, True], [True, True, True], [False, False, False]])
    got = ops.select_positions(scores, eligible, threshold=0.9, backend="torch")
    assert got.tolist() == [[False, True, False], [True, True, False], [False, False, False]]


def test_attention_reference_matches_sdpa_and_zeroes_fully_padded_rows():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g) for _ in range(3))
    torch.testing.assert_close(ops.attention(q, k, v, backend="torch"),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v))
    k2, v2 = k[:, :2], v[:, :2]  # grouped-query heads
    ref = torch.nn.functional.scaled_dot_product_attention(q, k2.repeat_interleave(2, 1), v2.repeat_interleave(2, 1))
    torch.testing.assert_close(ops.attention(q, k2, v2, backend="torch"), ref)
    kpm = torch.ones(2, 5, dtype=torch.bool)
    kpm[1] = False
    out = ops.attention(q, k, v, key_padding_mask=kpm, backend="torch")
    assert torch.equal(out[1], torch.zeros_like(out[1]))


def test_attention_rejects_mismatched_shapes():
    q = torch.randn(1, 3, 4, 8)
    with pytest.raises(ValueError, match="multiple"):
        ops.attention(q, torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match="key_padding_mask"):
        ops.attention(q, q, q, key_padding_mask=torch.ones(1, 3, dtype=torch.bool))


def test_triton_on_cpu_without_the_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        ops.token_stats(torch.randn(2, 3), backend="triton")


@pytest.mark.parametrize("score", ["confidence", "margin", "entropy", "none"])
@pytest.mark.parametrize("V,mask_id", [(1000, 999), (1000, 300), (257, 0), (300, None)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vocabulary_tiles_give_the_reference_stats(score, V, mask_id, dtype):
    g = torch.Generator().manual_seed(V)
    h = torch.randn(6, 16, generator=g).to(dtype)
    w = (torch.randn(V, 16, generator=g) * 2).to(dtype)
    b = torch.randn(V, generator=g).to(dtype)
    w[700 % V] = w[5]  # the same maximal logit in two tiles: the first index must win
    b[700 % V] = b[5]
    h[2, 0] = float("nan")  # a NaN row
    t_ref, s_ref = ops.linear_token_stats_reference(h, w, b, score=score, mask_id=mask_id)
    t, s = ops.linear_token_stats_tiled(h, w, b, score=score, mask_id=mask_id, max_bytes=4 * 6 * 256)  # tiles of 256
    ok = ~torch.isnan(s_ref)
    assert torch.equal(torch.isnan(s), ~ok)
    assert torch.equal(t[ok], t_ref[ok])
    torch.testing.assert_close(s[ok], s_ref[ok], rtol=1e-5, atol=1e-6)


def test_tiled_entropy_stays_accurate_for_large_logits():
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(4, 8, generator=g) * 30, torch.randn(2000, 8, generator=g)
    _, s_ref = ops.linear_token_stats_reference(h.double(), w.double(), score="entropy")
    _, s = ops.linear_token_stats_tiled(h, w, score="entropy", max_bytes=4 * 4 * 256)
    torch.testing.assert_close(s, s_ref.float(), rtol=1e-4, atol=1e-5)


def test_rows_select_logits_rows_without_the_caller_gathering_them():
    logits = torch.randn(4, 6, 30)
    rows = torch.tensor([3, 17, 0, 22])
    flat = logits.reshape(24, 30)
    before = flat.clone()
    t, s = ops.token_stats(flat, rows=rows, score="margin", mask_id=2, backend="torch")
    t_ref, s_ref = ops.token_stats_reference(flat[rows], score="margin", mask_id=2)
    assert torch.equal(t, t_ref) and torch.allclose(s, s_ref) and torch.equal(flat, before)
