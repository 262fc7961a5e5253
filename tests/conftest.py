import math
import os
import sys

import pytest
import torch

# Triton kernels run in the interpreter on machines without a GPU; the variable must be set before any
# fastmdm.kernels module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def poisoned(monkeypatch):
    """torch.empty returns NaN-filled floats and -1-filled integers, so an output element a kernel forgets
    to write fails its test."""
    real = torch.empty

    def empty(*args, **kwargs):
        t = real(*args, **kwargs)
        return t.fill_(math.nan) if t.is_floating_point() else t.fill_(-1) if t.dtype != torch.bool else t

    monkeypatch.setattr(torch, "empty", empty)


@pytest.fixture
def one_thread():
    """Tiny shapes: one torch thread avoids OpenMP barrier costs on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
