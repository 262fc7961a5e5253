"""The Sudoku model's position scheme and sizes, and the shipped checkpoint's outputs through the scheme."""
import numpy as np
import pytest
import torch

from fastmdm.checkpoint import load_model
from fastmdm.models import Transformer, TransformerConfig
from fastmdm.sudoku.model import PRESETS, SHIPPED_CHECKPOINT, preset, sudoku_model

pytestmark = pytest.mark.usefixtures("one_thread")


def units_by_hand():
    """(row, column, box) of each cell from a 9x9 picture of the grid, not from index arithmetic."""
    rows = np.repeat(np.arange(9)[:, None], 9, axis=1)
    cols = rows.T
    boxes = np.kron(np.arange(9).reshape(3, 3), np.ones((3, 3), dtype=int))
    return [torch.as_tensor(a.reshape(81)) for a in (rows, cols, boxes)]


def test_sudoku_positions_give_cells_in_one_row_the_same_row_vector():
    torch.manual_seed(0)
    m = sudoku_model("tiny")
    emb = m.row_emb(m.row_idx)
    assert torch.equal(emb[0], emb[8]) and not torch.equal(emb[0], emb[9])
    assert m.box_idx[0] == m.box_idx[20] and m.box_idx[0] != m.box_idx[3]
    for ours, ref in zip((m.row_idx, m.col_idx, m.box_idx), units_by_hand()):
        assert torch.equal(ours, ref)


def test_the_shipped_model_equals_a_learned_position_model_holding_its_row_column_box_sums():
    model, cfg = load_model(SHIPPED_CHECKPOINT)
    assert cfg["model"]["positions"] == "sudoku"
    state = model.state_dict()
    r, c, b = units_by_hand()
    table = state["row_emb.weight"][r] + state["col_emb.weight"][c] + state["box_emb.weight"][b]
    plain = Transformer(TransformerConfig(**{**cfg["model"], "positions": "learned"})).eval()
    rest = {k: v for k, v in state.items() if k.split(".")[0] not in ("row_emb", "col_emb", "box_emb")}
    plain.load_state_dict({**rest, "pos_emb.weight": table})
    x = torch.randint(0, 10, (4, 81), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-5)


def test_presets_are_sudoku_models_and_paper_has_about_six_million_parameters():
    assert set(PRESETS) == {"paper", "cpu", "tiny"}
    c = preset("tiny")
    assert (c.vocab_size, c.mask_token_id, c.max_len, c.positions) == (10, 0, 81, "sudoku")
    n = Transformer(preset("paper")).num_parameters()
    assert 5.5e6 < n < 6.5e6
    assert Transformer(preset("cpu")).num_parameters() < n
    with pytest.raises(ValueError, match="preset: unknown 'huge'"):
        preset("huge")
    with pytest.raises(ValueError, match="max_len: positions='sudoku' needs max_len=81"):
        preset("tiny", max_len=64)
    with pytest.raises(ValueError, match="length 80 .*exactly 81 cells"):
        sudoku_model("tiny")(torch.zeros(1, 80, dtype=torch.long))
