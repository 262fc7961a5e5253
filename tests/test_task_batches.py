"""What every task's training batch promises: the same batch whatever torch's thread count (the generator
runs on it), so `--threads` changes the speed of a run, not its data."""
import pytest
import torch

from fastmdm.nae import engine as nae_engine
from fastmdm.nae.train import make_batch as nae_batch
from fastmdm.zebra import engine as zebra_engine
from fastmdm.zebra.train import make_batch as zebra_batch


@pytest.mark.parametrize("make_batch, task", [(nae_batch, nae_engine.Task()),
                                              (zebra_batch, zebra_engine.Task(houses=4, attributes=4))],
                         ids=["nae", "zebra"])
def test_a_batch_does_not_depend_on_the_thread_count(make_batch, task):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = make_batch(task, 1, 48, torch.Generator().manual_seed(3))
        torch.set_num_threads(2)
        two = make_batch(task, 1, 48, torch.Generator().manual_seed(3))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert one[2].any()   # something is masked: the comparison is not of empty batches
