"""Sudoku: the native puzzle engine's Python API, datasets, the Sudoku MDM and its recipes.

Importing the package registers the ``"sudoku"`` and ``"sudoku-arm"`` position schemes of
`fastmdm.models.Transformer`.
"""
from fastmdm.sudoku import arm as _arm  # noqa: F401  (registers the "sudoku-arm" scheme)
from fastmdm.sudoku import positions as _positions  # noqa: F401  (registers the "sudoku" scheme)
