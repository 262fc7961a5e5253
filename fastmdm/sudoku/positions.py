"""The Sudoku position scheme ``"sudoku"``: each cell's position is the sum of a row, a column and a box
embedding.

Cells that share a unit share a vector, so the model sees the constraint structure from the first step.
Importing this module registers the scheme (`fastmdm.sudoku` does it on import), which is what lets a
checkpoint with ``"positions": "sudoku"`` load. The parameter names (``row_emb``, ``col_emb``, ``box_emb``)
are those of the shipped checkpoint.
"""
from __future__ import annotations

import torch
from torch import nn

from fastmdm.models.positions import PositionScheme, register_positions

CELLS = 81


def cell_units(device=None):
    """(row, column, box) index of each of the 81 cells, row-major; each [81] long."""
    cell = torch.arange(CELLS, device=device)
    row, col = cell // 9, cell % 9
    return row, col, (row // 3) * 3 + col // 3


def unit_vectors(model) -> torch.Tensor:
    """Each cell's row + column + box vector [81, d] (of a model whose scheme added these embeddings)."""
    return model.row_emb(model.row_idx) + model.col_emb(model.col_idx) + model.box_emb(model.box_idx)


class SudokuPositions(PositionScheme):
    name = "sudoku"

    def check_config(self, config):
        if config.max_len != CELLS:
            raise ValueError(f"TransformerConfig.max_len: positions='sudoku' needs max_len=81 (9x9 cells), "
                             f"got {config.max_len}")

    def add_to(self, model, config):
        model.row_emb = nn.Embedding(9, config.d_model)
        model.col_emb = nn.Embedding(9, config.d_model)
        model.box_emb = nn.Embedding(9, config.d_model)
        for name, idx in zip(("row_idx", "col_idx", "box_idx"), cell_units()):
            model.register_buffer(name, idx, persistent=False)

    def check_length(self, length, config):
        return None if length == CELLS else "a Sudoku model takes exactly 81 cells"

    def embed(self, model, start, end, device):
        return unit_vectors(model)[start:end]


register_positions(SudokuPositions())
