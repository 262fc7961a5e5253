"""`fastmdm.sample(..., backend="triton")` decodes exactly the tokens of backend="torch" at temperature 0,
for every strategy and schedule, with and without the model's hidden-state path (Triton's interpreter on CPU)."""

import pytest
import torch
from kernel_env import device_for
from toy import LogitsOnly, ToyMDM

import fastmdm

triton = pytest.importorskip("triton")
from fastmdm.kernels import select as ks  # noqa: E402  (only once triton is known to import)

DEV = device_for(ks)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

VOCAB, MASK = 23, 22


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, MASK, (3, 14), generator=g)
    x[0, 2:] = MASK  # mostly masks
    x[1, ::2] = MASK  # every other position
    x[2, 5] = MASK  # one fillable position
    am = torch.ones_like(x)
    am[1, :3] = 0  # left padding (masks under padding stay)
    return {"input_ids": x.to(DEV), "attention_mask": am.to(DEV)}


@pytest.mark.parametrize("hidden_path", [True, False], ids=["hidden-path", "logits-only"])
@pytest.mark.parametrize("strategy", ["random", "confidence", "margin", "entropy"])
def test_triton_backend_decodes_the_torch_tokens_at_temperature_zero(strategy, hidden_path):
    model = ToyMDM(vocab=VOCAB, d=16, mask_id=MASK, hidden_path=True).to(DEV)
    if not hidden_path:
        model = LogitsOnly(model)
    batch = _batch()
    for schedule in (dict(k=2), dict(steps=5, block_size=4), dict(threshold=0.5 if strategy != "entropy" else -1.0)):
        runs = [fastmdm.sample(model, batch, strategy=strategy, mask_id=MASK, backend=backend, return_trace=True,
                               generator=torch.Generator(device=DEV).manual_seed(7), **schedule)
                for backend in ("torch", "triton")]
        ref, got = runs
        assert torch.equal(got.tokens, ref.tokens), schedule
        assert torch.equal(got.order, ref.order), schedule
        assert got.nfe == ref.nfe
        fillable = (batch["input_ids"] == MASK) & batch["attention_mask"].bool()
        assert not (got.tokens[fillable] == MASK).any()  # every fillable mask filled, never with the mask id
        assert (got.order[fillable] >= 0).all()
