import json

import pytest
import torch

from fastmdm.sudoku.data import MASK_ID, synthetic_puzzles
from fastmdm.sudoku.train import TrainConfig, make_batch, train
from fastmdm.training import lr_at

POOL = (synthetic_puzzles(256, seed=5), synthetic_puzzles(16, seed=6))


def cfg(out, **kw):
    base = dict(preset="tiny", steps=8, batch_size=16, warmup_steps=3, data="synthetic", eval_every=0,
                save_every=0, out=str(out), threads=1)
    return TrainConfig(**{**base, **kw})


def quiet(msg):
    pass


def test_training_in_two_halves_with_resume_gives_exactly_the_parameters_of_one_run(tmp_path):
    whole = train(cfg(tmp_path / "a"), pool=POOL, log=quiet)["model"].state_dict()
    train(cfg(tmp_path / "b", stop_after=4, save_every=100), pool=POOL, log=quiet)
    meta = json.loads((tmp_path / "b" / "trainer.json").read_text())
    assert meta["step"] == 4 and meta["total_steps"] == 8
    resumed = train(cfg(tmp_path / "b", save_every=100), resume=True, pool=POOL, log=quiet)
    assert resumed["step"] == 8
    for k, v in resumed["model"].state_dict().items():
        assert torch.equal(v, whole[k]), k


def test_resume_without_the_optimizer_state_would_differ(tmp_path):
    """Guards the exact-resume test: restarting from the weights alone (fresh AdamW moments) diverges."""
    whole = train(cfg(tmp_path / "a"), pool=POOL, log=quiet)["model"].state_dict()
    train(cfg(tmp_path / "b", stop_after=4, save_every=100), pool=POOL, log=quiet)
    (tmp_path / "b" / "trainer.safetensors").unlink()
    from safetensors.torch import save_file
    save_file({}, str(tmp_path / "b" / "trainer.safetensors"))
    meta = json.loads((tmp_path / "b" / "trainer.json").read_text())
    (tmp_path / "b" / "trainer.json").write_text(json.dumps({**meta, "param_groups": meta["param_groups"]}))
    resumed = train(cfg(tmp_path / "b", save_every=100), resume=True, pool=POOL, log=quiet)["model"].state_dict()
    assert any(not torch.equal(resumed[k], whole[k]) for k in whole)


def test_a_batch_masks_only_blank_cells_and_keeps_every_clue_visible():
    p, s = (torch.as_tensor(POOL[0][k]).long() for k in ("puzzles", "solutions"))
    inputs, targets, masked, p_mask, fillable = make_batch(p, s, 64, torch.Generator().manual_seed(0))
    assert torch.equal(fillable, inputs.eq(MASK_ID) | (fillable & ~masked))
    assert not (masked & ~fillable).any()
    assert torch.equal(inputs[~masked], targets[~masked])
    assert (inputs[masked] == MASK_ID).all() and (targets >= 1).all()
    # stratified rates: exactly one per 1/64-wide bin
    t = ((p_mask - 1e-3) / (1 - 1e-3)).sort().values
    assert torch.equal((t * 64).floor().long(), torch.arange(64))


def test_training_lowers_the_loss_on_a_fixed_pool(tmp_path):
    out = train(cfg(tmp_path, steps=60, lr=3e-3, batch_size=32, log_every=10), pool=POOL, log=quiet)
    hist = out["history"]
    assert hist[-1]["loss_ema"] < hist[0]["loss_ema"] - 0.05


def test_learning_rate_warms_up_then_decays_to_the_floor():
    c = cfg("x", lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(c, 0, 100) == pytest.approx(1e-4)
    assert lr_at(c, 9, 100) == pytest.approx(1e-3)
    assert lr_at(c, 100, 100) == pytest.approx(1e-4)
    assert lr_at(c, 30, 100) > lr_at(c, 60, 100)


def test_a_run_writes_a_loadable_checkpoint_with_its_training_record(tmp_path):
    from fastmdm.checkpoint import load_model
    train(cfg(tmp_path, save_every=4), pool=POOL, log=quiet)
    model, conf = load_model(tmp_path)
    assert conf["trained"]["steps"] == 8 and conf["train"]["preset"] == "tiny"
    assert (tmp_path / "history.jsonl").read_text().count("\n") >= 1


def test_bad_training_settings_name_the_option():
    with pytest.raises(ValueError, match="steps, minutes: give the schedule's length"):
        TrainConfig()
    with pytest.raises(ValueError, match="preset"):
        TrainConfig(steps=1, preset="giant")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(steps=1, batch_size=0)
    with pytest.raises(ValueError, match="lr: must be a number > 0"):
        TrainConfig(steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="split"):
        TrainConfig(steps=1, split="medium")


def test_init_from_starts_from_the_source_weights_with_a_fresh_schedule_and_records_the_lineage(tmp_path):
    from fastmdm.checkpoint import load_model
    from fastmdm.sudoku.model import sudoku_model
    from fastmdm.training import warm_start
    train(cfg(tmp_path / "a", save_every=100), pool=POOL, log=quiet)
    source, _ = load_model(tmp_path / "a")
    fresh = sudoku_model("tiny")
    lineage = warm_start(fresh, tmp_path / "a", "cpu", quiet)
    for k, v in source.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert isinstance(lineage[0].pop("wall_s"), float)  # the source run's wall time
    assert lineage == [{"path": str(tmp_path / "a"), "steps": 8, "samples": 128, "world_size": 1,
                        "parameters": source.num_parameters(), "device": "cpu"}]

    warm = train(cfg(tmp_path / "b", steps=4, save_every=100, init_from=str(tmp_path / "a")), pool=POOL,
                 log=quiet)["model"].state_dict()
    cold = train(cfg(tmp_path / "c", steps=4), pool=POOL, log=quiet)["model"].state_dict()
    assert any(not torch.equal(warm[k], cold[k]) for k in warm)
    meta = json.loads((tmp_path / "b" / "trainer.json").read_text())
    assert meta["step"] == 4 and meta["total_steps"] == 4  # the new run's own schedule

    train(cfg(tmp_path / "d", steps=2, save_every=100, init_from=str(tmp_path / "b")), pool=POOL, log=quiet)
    chain = json.loads((tmp_path / "d" / "config.json").read_text())["trained"]["init_from"]
    assert [(c["path"], c["steps"]) for c in chain] == [(str(tmp_path / "a"), 8), (str(tmp_path / "b"), 4)]
    from fastmdm.training import total_steps
    assert total_steps(json.loads((tmp_path / "d" / "config.json").read_text())["trained"]) == 8 + 4 + 2
    assert total_steps({}) is None


def test_init_from_a_different_architecture_names_the_differences(tmp_path):
    from fastmdm.sudoku.model import sudoku_model
    from fastmdm.training import warm_start
    train(cfg(tmp_path / "a", steps=1, save_every=100), pool=POOL, log=quiet)
    with pytest.raises(ValueError, match="d_model"):
        warm_start(sudoku_model("cpu"), tmp_path / "a", "cpu", quiet)
    with pytest.raises(FileNotFoundError):
        warm_start(sudoku_model("tiny"), tmp_path / "nothing", "cpu", quiet)
