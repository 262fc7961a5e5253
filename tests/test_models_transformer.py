import pytest
import torch

import fastmdm
from fastmdm.models import PRESETS, Transformer, TransformerConfig, preset

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw):
    torch.manual_seed(0)
    return Transformer(preset("tiny", **kw)).eval()


def test_forward_is_the_lm_head_applied_to_forward_hidden():
    m = tiny()
    x = torch.randint(0, 10, (3, 81))
    h = m.forward_hidden(x)
    assert h.shape == (3, 81, m.config.d_model)
    torch.testing.assert_close(m(x), m.get_output_embeddings()(h))
    assert m.get_output_embeddings().weight.shape == (10, m.config.d_model)


@pytest.mark.parametrize("positions", ["sudoku", "learned", "rotary"])
def test_attention_is_bidirectional_so_a_late_token_changes_the_first_output(positions):
    m = tiny(positions=positions)
    x = torch.randint(1, 10, (1, 81))
    y = x.clone()
    y[0, 80] = 1 + (int(x[0, 80]) % 9)
    assert not torch.allclose(m(x)[0, 0], m(y)[0, 0])


def test_padded_keys_do_not_influence_real_positions():
    m = tiny(positions="learned", max_len=16)
    x = torch.randint(1, 10, (2, 16))
    am = torch.ones(2, 16, dtype=torch.long)
    am[:, 12:] = 0
    y = x.clone()
    y[:, 12:] = torch.randint(1, 10, (2, 4))
    torch.testing.assert_close(m(x, attention_mask=am)[:, :12], m(y, attention_mask=am)[:, :12])


def test_sudoku_positions_give_cells_in_one_row_the_same_row_vector():
    m = tiny()
    emb = m.row_emb(m.row_idx)
    assert torch.equal(emb[0], emb[8]) and not torch.equal(emb[0], emb[9])
    assert m.box_idx[0] == m.box_idx[20] and m.box_idx[0] != m.box_idx[3]


def test_paper_preset_has_about_six_million_parameters():
    n = Transformer(preset("paper")).num_parameters()
    assert 5.5e6 < n < 6.5e6
    assert Transformer(preset("cpu")).num_parameters() < n


def test_bad_config_names_the_field_and_the_fix():
    with pytest.raises(ValueError, match="n_heads"):
        TransformerConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="mask_token_id"):
        TransformerConfig(mask_token_id=10, vocab_size=10)
    with pytest.raises(ValueError, match="positions"):
        TransformerConfig(positions="alibi")
    with pytest.raises(ValueError, match="preset"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown keys"):
        TransformerConfig.from_dict({"d_model": 64, "colour": 1})
    assert set(PRESETS) >= {"paper", "cpu"}


def test_wrong_input_shape_or_dtype_is_rejected_clearly():
    m = tiny()
    with pytest.raises(ValueError, match="input_ids"):
        m(torch.zeros(81, dtype=torch.long))
    with pytest.raises(ValueError, match="length 80"):
        m(torch.zeros(1, 80, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        m(torch.zeros(1, 81))


def test_config_round_trips_through_a_dict():
    c = preset("cpu", positions="rotary")
    assert TransformerConfig.from_dict(c.to_dict()) == c


def test_sample_fills_every_mask_through_the_hidden_state_path_and_matches_full_logits():
    m = tiny()
    x = torch.randint(1, 10, (4, 81))
    x[:, ::3] = 0
    a = fastmdm.sample(m, x, strategy="margin", k=3, return_trace=True)
    assert not (a.tokens == 0).any()
    assert torch.equal(a.tokens[x != 0], x[x != 0])

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, ids):
            return self.inner(ids)
    b = fastmdm.sample(LogitsOnly(m), x, strategy="margin", k=3, return_trace=True)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order)


def test_gradients_reach_every_parameter():
    m = tiny()
    m.train()
    x = torch.randint(0, 10, (2, 81))
    m(x).logsumexp(-1).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
