"""Every bad input of docs/decoding.md's list gets a ValueError or TypeError that names the argument."""
import pytest
import torch
from toy import FixedLogits, ToyMDM

import fastmdm

V, MASK = 7, 6


@pytest.fixture
def model():
    return ToyMDM(vocab=V, seed=0)


@pytest.fixture
def x():
    return torch.full((2, 5), MASK)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(strategy="best"), ValueError, ["strategy", "margin", "confidence", "entropy", "random"]),
    (dict(k=0), ValueError, ["k", ">= 1"]),
    (dict(k=1.5), TypeError, ["k", "int"]),
    (dict(steps=0), ValueError, ["steps", ">= 1"]),
    (dict(k=2, steps=3), ValueError, ["k", "steps", "only one"]),
    (dict(k=2, threshold=0.5), ValueError, ["k", "threshold"]),
    (dict(strategy="confidence", threshold=1.5), ValueError, ["threshold", "(0, 1]"]),
    (dict(strategy="margin", threshold=0.0), ValueError, ["threshold", "(0, 1]"]),
    (dict(strategy="entropy", threshold=0.2), ValueError, ["threshold", "-H"]),
    (dict(threshold="high"), TypeError, ["threshold"]),
    (dict(block_size=0), ValueError, ["block_size"]),
    (dict(steps=2, block_size=1), ValueError, ["steps", "blocks"]),
    (dict(temperature=-1.0), ValueError, ["temperature"]),
    (dict(score_noise=-0.1), ValueError, ["score_noise"]),
    (dict(backend="cuda"), ValueError, ["backend", "torch", "triton"]),
    (dict(generator=0), TypeError, ["generator"]),
    (dict(mask_id=V), ValueError, ["mask_id", "vocabulary"]),
    (dict(mask_id=-1), ValueError, ["mask_id"]),
    (dict(mask_id="6"), TypeError, ["mask_id"]),
    (dict(return_trace=1), TypeError, ["return_trace"]),
])
def test_bad_arguments_raise_errors_that_name_them(model, x, kwargs, error, words):
    kwargs = {"mask_id": MASK, **kwargs}
    if kwargs["mask_id"] == V:  # a mask id the model cannot emit
        model, x = FixedLogits(torch.zeros(V)), torch.full((2, 5), V)
    with pytest.raises(error) as e:
        fastmdm.sample(model, x, **kwargs)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_missing_mask_id_asks_for_it(model, x):
    with pytest.raises(ValueError, match="mask_id.*config.mask_token_id"):
        fastmdm.sample(model, x)


@pytest.mark.parametrize("batch,error,word", [
    (torch.full((5,), MASK), ValueError, "2-D"),
    (torch.full((1, 2, 5), MASK), ValueError, "2-D"),
    (torch.full((2, 5), float(MASK)), TypeError, "integer"),
    ([[MASK] * 5], TypeError, "LongTensor"),
    ({"ids": torch.full((2, 5), MASK)}, ValueError, "input_ids"),
    ({"input_ids": torch.full((2, 5), MASK), "attention_mask": torch.ones(2, 4)}, ValueError, "attention_mask"),
])
def test_malformed_batches_are_rejected(model, batch, error, word):
    with pytest.raises(error, match=word):
        fastmdm.sample(model, batch, mask_id=MASK)


def test_logits_of_the_wrong_shape_are_rejected(x):
    class Flat(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0] * x.shape[1], V)

    with pytest.raises(ValueError, match=r"logits must be \[B, L, V\]"):
        fastmdm.sample(Flat(), x, mask_id=MASK)


def test_a_model_that_returns_no_logits_is_rejected(x):
    class Nothing(torch.nn.Module):
        def forward(self, x):
            return {"scores": x}

    with pytest.raises(TypeError, match="logits"):
        fastmdm.sample(Nothing(), x, mask_id=MASK)


@pytest.mark.parametrize("strategy", ["random", "confidence", "margin", "entropy"])
def test_nan_logits_stop_decoding_naming_the_step_and_position(strategy):
    class NaNAtStepTwo(torch.nn.Module):
        calls = 0

        def forward(self, x):
            self.calls += 1
            out = torch.randn(x.shape[0], x.shape[1], V)
            if self.calls == 3:
                out[1, :, 2] = float("nan")
            return out

    x = torch.full((2, 5), MASK)
    with pytest.raises(ValueError, match=r"NaN logits at step 2, batch row 1, position \d"):
        fastmdm.sample(NaNAtStepTwo(), x, mask_id=MASK, strategy=strategy, k=1)


def test_a_callable_strategy_returning_the_wrong_shape_is_rejected(model, x):
    with pytest.raises(ValueError, match="strategy: the callable must return scores of shape"):
        fastmdm.sample(model, x, mask_id=MASK, strategy=lambda logits: logits.sum())


def test_generate_checks_its_own_arguments(model):
    p = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="gen_length"):
        fastmdm.generate(model, p, gen_length=0, mask_id=MASK)
    with pytest.raises(ValueError, match="cfg_scale"):
        fastmdm.generate(model, p, gen_length=4, mask_id=MASK, cfg_scale=-1)
    with pytest.raises(ValueError, match="prompt_ids"):
        fastmdm.generate(model, p[0], gen_length=4, mask_id=MASK)
    with pytest.raises(ValueError, match="attention_mask"):
        fastmdm.generate(model, p, gen_length=4, mask_id=MASK, attention_mask=torch.ones(2, 4))
