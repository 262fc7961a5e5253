"""The Zebra position scheme: a clue token's role, a cell's house and attribute embedded as the clues' tokens."""
import pytest
import torch

from fastmdm.checkpoint import save_model
from fastmdm.models import get_positions
from fastmdm.zebra import engine
from fastmdm.zebra.engine import ATTRIBUTE_BASE, CLUE_TOKENS, HOUSE_BASE, Task
from fastmdm.zebra.model import load, zebra_model
from fastmdm.zebra.positions import CELL_ROLE, scheme_name

TASK = Task(houses=3, attributes=4)


def test_the_vectors_are_roles_and_the_cells_house_and_attribute_tokens():
    torch.manual_seed(0)
    model = zebra_model(TASK, "tiny")
    assert model.config.positions == "zebra-3x4-12" == scheme_name(TASK)
    pos = model.position_scheme.embed(model, 0, TASK.length, "cpu")
    role, tok = model.role_emb.weight, model.tok_emb.weight
    slot = model.slot_emb.weight
    for j in range(TASK.clue_length):
        torch.testing.assert_close(pos[j], role[j % CLUE_TOKENS] + slot[j // CLUE_TOKENS])
    for h in range(TASK.houses):
        for a in range(TASK.attributes):
            want = role[CELL_ROLE] + tok[HOUSE_BASE + h] + tok[ATTRIBUTE_BASE + a]
            torch.testing.assert_close(pos[TASK.cell_position(h, a)], want)
    assert torch.equal(model.position_scheme.embed(model, 5, 20, "cpu"), pos[5:20])


def test_a_clue_token_gets_its_role_and_its_slot_and_a_permuted_clue_list_only_moves_the_slots():
    """Permuting the clue slots of the input and the slot vectors alike leaves every cell's output unchanged:
    the slot vectors only bind a slot's tokens together, and nothing else in the model knows slot order."""
    torch.manual_seed(1)
    model = zebra_model(TASK, "tiny").eval()
    x = torch.from_numpy(engine.generate(4, TASK, seed=3).tokens).long()
    x[:, TASK.cell_positions] = engine.MASK_ID
    perm = torch.randperm(TASK.max_clues)
    slots = x[:, TASK.clue_positions].view(4, TASK.max_clues, CLUE_TOKENS)[:, perm].reshape(4, -1)
    y = x.clone()
    y[:, TASK.clue_positions] = slots
    with torch.no_grad():
        a = model(x)[:, TASK.cell_positions]
        moved = model(y)[:, TASK.cell_positions]
        model.slot_emb.weight.copy_(model.slot_emb.weight[perm].clone())
        b = model(y)[:, TASK.cell_positions]
    assert (a - moved).abs().max() > 1e-4      # the slot vectors do reach the cells
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_checkpoint_of_the_scheme_loads_with_the_same_outputs(tmp_path):
    torch.manual_seed(2)
    model = zebra_model(TASK, "tiny").eval()
    save_model(tmp_path / "ck", model, extra={"train": {"houses": 3, "attributes": 4, "max_clues": 12,
                                                        "logic_only": False}})
    loaded, task, _ = load(tmp_path / "ck")
    x = torch.from_numpy(engine.generate(2, TASK, seed=4).tokens).long()
    assert task == TASK
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_the_family_builds_a_scheme_per_shape_and_refuses_the_rest():
    assert get_positions("zebra-4x2-7").task == Task(houses=4, attributes=2, max_clues=7)
    with pytest.raises(ValueError, match="not a registered position scheme"):
        get_positions("zebra-4by2")
    with pytest.raises(ValueError, match="max_len"):
        from fastmdm.models import Transformer, TransformerConfig
        Transformer(TransformerConfig(vocab_size=engine.VOCAB_SIZE, d_model=16, n_layers=1, n_heads=2, d_ff=16,
                                      max_len=10, mask_token_id=engine.MASK_ID, positions="zebra-3x4-12"))
    with pytest.raises(ValueError, match="positions"):
        zebra_model(TASK, "tiny", positions="rotary")


def test_clues_adds_the_whole_clue_to_each_of_its_tokens_and_nothing_to_the_cells():
    torch.manual_seed(3)
    model = zebra_model(TASK, "tiny", positions="clues")
    assert model.config.positions == "zebra-clues-3x4-12"
    x = torch.from_numpy(engine.generate(2, TASK, seed=5).tokens).long()
    named = model.position_scheme.embed_named(model, x, 0, TASK.length)
    table = model.clue_emb.weight.view(CLUE_TOKENS, engine.VOCAB_SIZE, -1)
    for b in range(2):
        for j in range(TASK.max_clues):
            slot = x[b, CLUE_TOKENS * j:CLUE_TOKENS * (j + 1)]
            want = sum(table[r, slot[r]] + model.tok_emb.weight[slot[r]] for r in range(CLUE_TOKENS))
            for r in range(CLUE_TOKENS):
                torch.testing.assert_close(named[b, CLUE_TOKENS * j + r], want)
    assert not named[:, TASK.cell_positions].any()
    assert torch.equal(model.position_scheme.embed_named(model, x, 7, 30), named[:, 7:30])
    assert get_positions("zebra-clues-4x2-7").clues and not get_positions("zebra-4x2-7").clues
