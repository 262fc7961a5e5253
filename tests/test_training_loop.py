"""`fastmdm.training.run` with a task of its own: the protocol a new task implements, in the smallest form."""
import json
from dataclasses import dataclass

import pytest
import torch

from fastmdm import training
from fastmdm.training import LoopConfig, MDMObjective, sequence_mdm


@dataclass
class ToyConfig(LoopConfig):
    length: int = 8
    out: str = "runs/toy"


class CopyTask:
    """Rows of one repeated random token: a masked position is predictable from any visible one."""

    def __init__(self):
        self.calls = {"prepare": 0, "batch": [], "evaluate": []}

    def build_model(self, cfg):
        return sequence_mdm(dict(d_model=16, n_layers=1, n_heads=2, d_ff=32), 5, 4, cfg.length)

    def describe(self, cfg):
        return "toy copy task"

    def prepare(self, cfg, log):
        self.calls["prepare"] += 1

    def objective(self, model):
        return MDMObjective(model)

    def batch(self, cfg, g, step):
        self.calls["batch"].append(step)
        x0 = torch.randint(4, (cfg.batch_size, 1), generator=g).expand(-1, cfg.length).contiguous()
        t = torch.rand(cfg.batch_size, generator=g)
        masked = torch.rand(x0.shape, generator=g) < t[:, None]
        return x0.masked_fill(masked, 4), x0, masked, t.clamp_min(1e-3), torch.ones_like(masked)

    def evaluate(self, model, cfg):
        self.calls["evaluate"].append(True)
        return [{"n": 1}], "toy evaluation"


def cfg(tmp_path, **kw):
    return ToyConfig(**{"steps": 7, "batch_size": 4, "warmup_steps": 1, "eval_every": 3, "eval_n": 1,
                        "save_every": 3, "log_every": 1, "threads": 1, "out": str(tmp_path / "run"), **kw})


def test_run_prepares_once_draws_every_step_in_order_evaluates_and_saves(tmp_path):
    task, logs = CopyTask(), []
    r = training.run(cfg(tmp_path), task, log=logs.append)
    assert task.calls["prepare"] == 1 and task.calls["batch"] == list(range(7))
    assert len(task.calls["evaluate"]) == 3                      # steps 3, 6 and the last, 7
    assert any("toy copy task" in m for m in logs) and sum("toy evaluation" in m for m in logs) == 3
    hist = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist if "eval" in h] == [3, 6, 7]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["length"] == 8 and saved["trained"]["steps"] == 7 and r["step"] == 7


def test_a_resumed_run_continues_the_step_count_and_ends_where_one_run_does(tmp_path):
    whole = training.run(cfg(tmp_path / "a"), CopyTask(), log=lambda m: None)
    first = CopyTask()
    training.run(cfg(tmp_path / "b", stop_after=3), first, log=lambda m: None)
    second = CopyTask()
    part = training.run(cfg(tmp_path / "b"), second, resume=True, log=lambda m: None)
    assert first.calls["batch"] == [0, 1, 2] and second.calls["batch"] == [3, 4, 5, 6]
    for a, b in zip(whole["model"].state_dict().values(), part["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_warm_start_needs_the_same_model(tmp_path):
    training.run(cfg(tmp_path / "a"), CopyTask(), log=lambda m: None)
    with pytest.raises(ValueError, match="max_len: 8 there, 9 here"):
        training.run(cfg(tmp_path / "b", length=9, init_from=str(tmp_path / "a" / "run")), CopyTask(),
                     log=lambda m: None)


@pytest.mark.parametrize("kw, msg", [({"steps": None}, "steps, minutes"), ({"lr": 0}, "lr"),
                                     ({"batch_size": 0}, "batch_size"), ({"grad_clip": -1}, "grad_clip")])
def test_the_loop_config_refuses(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cfg(tmp_path, **kw)
