"""fastmdm.kernels.select against the torch references of fastmdm.ops, through Triton's interpreter on CPU
(on a CUDA machine the same tests run the compiled kernels)."""
import math

import pytest
import torch
from kernel_env import device_for

from fastmdm import ops

triton = pytest.importorskip("triton")
from fastmdm.kernels import select as ks  # noqa: E402  (only once triton is known to import)

DEV = device_for(ks)

# numpy's overflow / invalid-value warnings from the interpreter's emulation (Philox wraps uint32 on purpose)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SCORES = ["confidence", "margin", "entropy", "none"]


def _assert_stats_equal(got, ref, rtol=1e-5, atol=1e-6):
    (tk, sc), (rtk, rsc) = got, ref
    assert tk.dtype == torch.int64 and sc.dtype == torch.float32
    assert torch.equal(tk.cpu(), rtk.cpu())
    torch.testing.assert_close(sc.cpu(), rsc.cpu(), rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_stats_gives_the_reference_tokens_and_scores_for_every_score_kind(dtype, poisoned):
    g = torch.Generator().manual_seed(1)
    # (N, V, split, block_v): one column, two columns, V not a multiple of the block, several tiles and splits
    for N, V, split, block_v in [(1, 1, None, None), (3, 2, None, None), (5, 301, None, 64), (4, 300, 3, 32)]:
        x = (torch.randn(N, V, generator=g) * 3).to(dtype).to(DEV)
        for score in SCORES:
            for mask_id in (None, V - 1) if V > 1 else (None,):
                got = ks.token_stats(x, score=score, mask_id=mask_id, _split=split, _block_v=block_v)
                _assert_stats_equal(got, ops.token_stats_reference(x, score=score, mask_id=mask_id))


def test_the_largest_supported_vocabulary_of_262144_columns():
    g = torch.Generator().manual_seed(10)
    V = 262_144
    x = torch.randn(2, V, generator=g).to(torch.bfloat16).to(DEV)
    x[1, V - 3] = 30.0  # the winner in the last tile
    for score in ("margin", "entropy"):
        got = ks.token_stats(x, score=score, mask_id=V - 1)
        _assert_stats_equal(got, ops.token_stats_reference(x, score=score, mask_id=V - 1))
    assert got[0][1].item() == V - 3


def test_token_stats_reads_non_contiguous_logits(poisoned):
    g = torch.Generator().manual_seed(2)
    base = torch.randn(300, 9, generator=g).to(DEV)
    x = base.t()[::2]  # [5, 300], strides (2, 9)
    assert not x.is_contiguous()
    for score in ("margin", "entropy"):
        got = ks.token_stats(x, score=score, mask_id=7, _block_v=128)
        _assert_stats_equal(got, ops.token_stats_reference(x, score=score, mask_id=7))


def test_rows_gathers_inside_the_kernel_without_copying_the_logits(poisoned):
    g = torch.Generator().manual_seed(9)
    out = (torch.randn(3, 11, 130, generator=g) * 2).to(torch.bfloat16).to(DEV)  # a model's [B, L, V] output
    rows = torch.tensor([0, 5, 32, 12, 7], device=DEV)  # flat indices b * L + i of the fillable positions
    flat = out.view(-1, 130)
    for score in ("confidence", "entropy"):
        got = ks.token_stats(flat, score=score, mask_id=4, rows=rows, _block_v=64)
        _assert_stats_equal(got, ops.token_stats_reference(flat[rows], score=score, mask_id=4))
    with pytest.raises(ValueError, match="rows"):
        ks.token_stats(flat, rows=torch.tensor([33], device=DEV) + 1000)


def test_ties_go_to_the_lowest_token_across_tiles_and_splits(poisoned):
    x = torch.zeros(3, 200)
    x[0, [150, 20, 199]] = 5.0  # the max three times, in different tiles
    x[1, :] = 1.0  # everything tied
    x[2, [3, 130]] = 2.0
    x = x.to(DEV)
    for split, block_v in [(None, 64), (4, 16), (None, None)]:
        for score in ("confidence", "margin"):
            got = ks.token_stats(x, score=score, _split=split, _block_v=block_v)
            _assert_stats_equal(got, ops.token_stats_reference(x, score=score))
            assert got[0].tolist() == [20, 0, 3]
    # margin of tied top two is 0
    assert ks.token_stats(x, score="margin")[1][0].item() == 0.0


def test_the_mask_column_is_never_chosen_even_when_it_holds_the_maximum():
    x = torch.randn(6, 50)
    x[:, 17] = 100.0
    x = x.to(DEV)
    tok, _ = ks.token_stats(x, mask_id=17)
    assert not (tok == 17).any()
    g = torch.Generator(device=DEV).manual_seed(0)
    tok, _ = ks.token_stats(x, mask_id=17, temperature=5.0, generator=g)
    assert not (tok == 17).any()


@pytest.mark.parametrize("score", SCORES)
def test_a_row_holding_nan_gets_a_nan_score_whatever_the_score(score):
    x = torch.randn(4, 70)
    x[1, 33] = math.nan
    x[3, 0] = math.nan
    x = x.to(DEV)
    for temperature in (0.0, 0.8):
        _, sc = ks.token_stats(x, score=score, temperature=temperature, _block_v=32,
                               generator=torch.Generator(device=DEV).manual_seed(0))
        assert torch.isnan(sc).tolist() == [False, True, False, True]


def test_scores_at_temperature_come_from_the_tempered_distribution_of_the_drawn_token(poisoned):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(7, 90, generator=g) * 2).to(DEV)
    T = 0.7
    logp = torch.log_softmax(x.float() / T, -1)
    for score in SCORES:
        gen = torch.Generator(device=DEV).manual_seed(11)
        tok, sc = ks.token_stats(x, score=score, temperature=T, generator=gen, _block_v=32)
        if score == "confidence":
            ref = logp.gather(1, tok[:, None]).squeeze(1).exp()
        elif score == "margin":
            top = logp.topk(2, -1).values.exp()
            ref = top[:, 0] - top[:, 1]
        elif score == "entropy":
            ref = (logp.exp() * logp).sum(-1)
        else:
            ref = torch.zeros(7, device=DEV)
        torch.testing.assert_close(sc, ref, rtol=1e-5, atol=1e-6)


def test_draws_repeat_with_the_same_generator_seed_and_follow_the_softmax():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5]]).expand(20000, 4).contiguous().to(DEV)
    a = ks.token_stats(logits, temperature=1.0, generator=torch.Generator(device=DEV).manual_seed(5))[0]
    b = ks.token_stats(logits, temperature=1.0, generator=torch.Generator(device=DEV).manual_seed(5))[0]
    c = ks.token_stats(logits, temperature=1.0, generator=torch.Generator(device=DEV).manual_seed(6))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    freq = torch.bincount(a.cpu(), minlength=4).float() / a.numel()
    p = torch.softmax(logits[0].cpu(), -1)
    # 20000 draws: the standard error of each frequency is <= 0.0036; 5 sigma
    assert (freq - p).abs().max() < 0.018, (freq, p)


def _clear_rows(logits, gap=1e-3):
    """Rows whose top two logits differ by more than `gap`: matmul summation order cannot swap them."""
    top = logits.float().topk(2, -1).values
    return (top[:, 0] - top[:, 1]) > gap


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_token_stats_equals_token_stats_of_the_materialized_logits(dtype, poisoned):
    g = torch.Generator().manual_seed(4)
    for N, D, V, bias, split in [(1, 16, 37, False, None), (21, 40, 300, True, None), (18, 24, 129, True, 3)]:
        h = torch.randn(N, D, generator=g).to(dtype).to(DEV)
        W = torch.randn(V, D, generator=g).to(dtype).to(DEV)
        b = torch.randn(V, generator=g).to(dtype).to(DEV) if bias else None
        clear = _clear_rows(torch.nn.functional.linear(h, W, b))
        for score in SCORES:
            tk, sc = ks.linear_token_stats(h, W, b, score=score, mask_id=2, _split=split)
            rtk, rsc = ops.linear_token_stats_reference(h, W, b, score=score, mask_id=2)
            assert tk.dtype == torch.int64 and not torch.isnan(sc).any()
            assert torch.equal(tk[clear], rtk[clear]) and clear.float().mean() > 0.8
            torch.testing.assert_close(sc, rsc, rtol=1e-4, atol=1e-5)


def test_linear_token_stats_draws_at_temperature_with_consistent_confidence():
    g = torch.Generator().manual_seed(5)
    h, W = torch.randn(9, 32, generator=g).to(DEV), torch.randn(70, 32, generator=g).to(DEV)
    T = 1.3
    tok, sc = ks.linear_token_stats(h, W, score="confidence", temperature=T, mask_id=0,
                                    generator=torch.Generator(device=DEV).manual_seed(1))
    logp = torch.log_softmax((h @ W.t()).masked_fill(torch.arange(70, device=DEV) == 0, -math.inf) / T, -1)
    torch.testing.assert_close(sc, logp.gather(1, tok[:, None]).squeeze(1).exp(), rtol=1e-4, atol=1e-6)
    assert not (tok == 0).any()


def _select_cases(g):
    for L in (1, 2, 7, 33, 100):
        B = 4
        scores = torch.randint(-2, 3, (B, L), generator=g).float()  # many ties
        scores[scores == 0] = -0.0 if L % 2 else 0.0
        scores[:, ::5] = torch.randn(B, len(range(0, L, 5)), generator=g)
        eligible = torch.rand(B, L, generator=g) < 0.6
        eligible[0] = True  # all eligible
        eligible[1] = False  # none eligible
        eligible[2, : L // 2] = False
        counts = torch.randint(0, L + 2, (B,), generator=g)
        counts[0] = L
        yield scores, eligible, counts
    # an eligible -inf score behind ineligible positions (the reference ranks both as -inf, stable)
    s = torch.tensor([[3.0, 1.0, -math.inf, 2.0]])
    yield s, torch.tensor([[False, True, True, False]]), torch.tensor([2])


def test_select_positions_top_n_equals_the_reference_with_ties_and_per_row_counts(poisoned):
    g = torch.Generator().manual_seed(6)
    for scores, eligible, counts in _select_cases(g):
        for dtype in (torch.float32, torch.bfloat16):
            s = scores.to(dtype).to(DEV)
            got = ks.select_positions(s, eligible.to(DEV), counts=counts.to(DEV))
            assert torch.equal(got.cpu(), ops.select_topn_reference(s, eligible.to(DEV), counts.to(DEV)).cpu())


def test_select_positions_threshold_equals_the_reference(poisoned):
    g = torch.Generator().manual_seed(7)
    for scores, eligible, _ in _select_cases(g):
        for tau in (0.5, 1.0, 5.0):
            s, e = scores.to(DEV), eligible.to(DEV)
            got = ks.select_positions(s, e, threshold=tau)
            assert torch.equal(got.cpu(), ops.select_threshold_reference(s, e, tau).cpu())


def test_select_positions_reads_a_non_contiguous_score_view():
    g = torch.Generator().manual_seed(8)
    s = torch.randn(40, 3, generator=g).t().to(DEV)  # [3, 40], stride (1, 3)
    e = (torch.rand(3, 40, generator=g) < 0.5).to(DEV)
    c = torch.tensor([1, 5, 40], device=DEV)
    assert torch.equal(ks.select_positions(s, e, counts=c), ops.select_topn_reference(s, e, c))


def test_ops_dispatch_reaches_the_kernels_with_backend_triton():
    x = torch.randn(3, 20, device=DEV)
    tok, sc = ops.token_stats(x, score="margin", backend="triton")
    _assert_stats_equal((tok, sc), ops.token_stats(x, score="margin", backend="torch"))
    e = torch.ones(3, 20, dtype=torch.bool, device=DEV)
    c = torch.tensor([1, 2, 3], device=DEV)
    assert torch.equal(ops.select_positions(x, e, counts=c, backend="triton"),
                       ops.select_positions(x, e, counts=c, backend="torch"))


def test_bad_arguments_get_clear_errors():
    x = torch.randn(2, 5, device=DEV)
    with pytest.raises(ValueError, match="score"):
        ks.token_stats(x, score="probability")
    with pytest.raises(ValueError, match="mask_id"):
        ks.token_stats(x, mask_id=5)
    with pytest.raises(ValueError, match="logits"):
        ks.token_stats(x[0])
    with pytest.raises(ValueError, match="share d"):
        ks.linear_token_stats(x, torch.randn(7, 4, device=DEV))
    with pytest.raises(ValueError, match="counts"):
        ks.select_positions(x, x > 0)
