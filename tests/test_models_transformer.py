import pytest
import torch

import fastmdm
from fastmdm.models import PositionScheme, Transformer, TransformerConfig, register_positions

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(vocab_size=10, mask_token_id=0, max_len=81, d_model=32, n_layers=2, n_heads=2, d_ff=64)


def tiny(**kw):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**{**TINY, **kw})).eval()


def test_forward_is_the_lm_head_applied_to_forward_hidden():
    m = tiny()
    x = torch.randint(0, 10, (3, 81))
    h = m.forward_hidden(x)
    assert h.shape == (3, 81, m.config.d_model)
    torch.testing.assert_close(m(x), m.get_output_embeddings()(h))
    assert m.get_output_embeddings().weight.shape == (10, m.config.d_model)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
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


def test_the_defaults_hold_no_application_values_and_the_data_fields_are_required():
    with pytest.raises(TypeError):
        TransformerConfig()  # vocab_size, mask_token_id and max_len belong to the data
    c = TransformerConfig(vocab_size=100, mask_token_id=99, max_len=64)
    assert c.positions == "learned"
    assert set(tiny().state_dict()) >= {"pos_emb.weight"}


def test_bad_config_names_the_field_and_the_fix():
    with pytest.raises(ValueError, match="n_heads"):
        TransformerConfig(**{**TINY, "d_model": 30, "n_heads": 4})
    with pytest.raises(ValueError, match="mask_token_id"):
        TransformerConfig(**{**TINY, "mask_token_id": 10, "vocab_size": 10})
    with pytest.raises(ValueError, match="positions: 'alibi' is not a registered position scheme"):
        TransformerConfig(**{**TINY, "positions": "alibi"})
    with pytest.raises(ValueError, match="even head dimension"):
        TransformerConfig(**{**TINY, "d_model": 30, "n_heads": 2, "positions": "rotary"})
    with pytest.raises(ValueError, match="unknown keys"):
        TransformerConfig.from_dict({**TINY, "colour": 1})
    with pytest.raises(ValueError, match="missing keys"):
        TransformerConfig.from_dict({"d_model": 64})


def test_wrong_input_shape_or_dtype_is_rejected_clearly():
    m = tiny()
    with pytest.raises(ValueError, match="input_ids"):
        m(torch.zeros(81, dtype=torch.long))
    with pytest.raises(ValueError, match="length 82 .*max_len=81"):
        m(torch.zeros(1, 82, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        m(torch.zeros(1, 81))


def test_config_round_trips_through_a_dict():
    c = TransformerConfig(**{**TINY, "positions": "rotary"})
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


class Halves(PositionScheme):
    """A test scheme: one learned vector for the first half of the positions, another for the second."""
    name = "test-halves"

    def add_to(self, model, config):
        model.half_emb = torch.nn.Embedding(2, config.d_model)

    def embed(self, model, start, end, device):
        L = model.config.max_len
        return model.half_emb((torch.arange(start, end, device=device) >= L // 2).long())


def test_a_registered_scheme_adds_its_parameters_and_its_vectors():
    register_positions(Halves())
    m = tiny(positions="test-halves", max_len=8)
    assert "half_emb.weight" in m.state_dict() and "pos_emb.weight" not in m.state_dict()
    x = torch.randint(1, 10, (1, 8))
    with torch.no_grad():
        got = m.forward_hidden(x)
        # by hand: token embedding + the half's vector, then the blocks and the final norm
        ref = m.tok_emb(x) + m.half_emb.weight[torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])]
        for blk in m.blocks:
            ref = blk(ref)
        m.half_emb.weight.zero_()
        zeroed = m.forward_hidden(x)
    torch.testing.assert_close(got, m.norm(ref))
    assert not torch.allclose(got, zeroed)
    with pytest.raises(ValueError, match="already registered"):
        class Other(Halves):
            pass
        register_positions(Other())
