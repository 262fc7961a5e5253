"""Sudoku: the native puzzle engine's Python API, datasets, the Sudoku MDM and its recipes."""
