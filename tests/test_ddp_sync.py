"""Two CPU processes (gloo) train the tiny model with DDP: their parameters must stay identical."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from fastmdm.sudoku.data import synthetic_puzzles
from fastmdm.sudoku.train import TrainConfig, train


def _cfg(out):
    return TrainConfig(preset="tiny", steps=4, batch_size=8, warmup_steps=2, data="synthetic", n_train=64,
                       eval_every=0, save_every=0, out=str(out), threads=1)


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    pool = (synthetic_puzzles(64, seed=3), synthetic_puzzles(8, seed=4))
    try:
        model = train(_cfg(out), pool=pool, log=lambda m: None)["model"]
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_parameters_and_differ_from_one_process(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    a = load_file(str(tmp_path / "rank0.safetensors"))
    b = load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # each rank drew its own batches, so the averaged gradients differ from one process training alone
    pool = (synthetic_puzzles(64, seed=3), synthetic_puzzles(8, seed=4))
    alone = train(_cfg(tmp_path / "alone"), pool=pool, log=lambda m: None)["model"].state_dict()
    assert any(not torch.equal(alone[k], a[k]) for k in a)
