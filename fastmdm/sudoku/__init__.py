"""Sudoku: the native puzzle engine's Python API, datasets, the Sudoku MDM and its recipes.

Importing the package registers the ``"sudoku"`` position scheme of `fastmdm.models.Transformer`.
"""
from fastmdm.sudoku import positions as _positions  # noqa: F401  (registers the "sudoku" scheme)
