"""L&O-NAE-SAT MDMs: the training batches, the shared loop on this task, the evaluation protocol (checked
against the exact posterior) and `fastmdm nae train|eval|solve`."""
import json

import numpy as np
import pytest
import torch
from cli_helpers import failing

from fastmdm.cli import main
from fastmdm.engine import Trace
from fastmdm.nae import engine
from fastmdm.nae import evaluate as ev
from fastmdm.nae.data import TEST_SEED
from fastmdm.nae.engine import MASK_ID, Task
from fastmdm.nae.model import load
from fastmdm.nae.train import NAETrainConfig, make_batch, train

TASK = Task(latents=6, observations=10, structure_seed=4)
SMALL = ["--latents", "6", "--observations", "10", "--structure-seed", "4"]


class PosteriorOracle(torch.nn.Module):
    """The Bayes-optimal predictor of a small task: the exact probability of a 1 at every position given the
    visible tokens (`engine.posterior`), as logits over (0, 1, mask)."""

    def __init__(self, task):
        super().__init__()
        self.task = task
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        p = torch.from_numpy(engine.posterior(x.numpy(), self.task).p_one).float().clamp(1e-6, 1 - 1e-6)
        return torch.stack([(1 - p).log(), p.log(), torch.full_like(p, -1e9)], -1)


class AlwaysOne(torch.nn.Module):
    """Latents uniform, every observation 1: what the paper's caption calls naive guessing (75%)."""

    def __init__(self, task):
        super().__init__()
        self.task = task
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.zeros(*x.shape, 3)
        logits[..., 2] = -1e9
        logits[:, self.task.latents:, 0] = -1e9
        return logits


# ---------------------------------------------------------------- batches and config
def test_a_batch_is_fresh_generated_data_masked_at_stratified_rates():
    inputs, x0, masked, p_mask, fillable = make_batch(TASK, 1, 64, torch.Generator().manual_seed(0))
    assert engine.check(x0.numpy(), TASK).ok.all()
    assert torch.equal(inputs[masked], torch.full_like(inputs[masked], MASK_ID))
    assert torch.equal(inputs[~masked], x0[~masked]) and fillable.all()
    t = (p_mask - 1e-3) / (1 - 1e-3)                                  # sample_mask's eps undone
    assert sorted((t * 64).floor().long().tolist()) == list(range(64))   # one rate per 1/64 bucket
    again = make_batch(TASK, 1, 64, torch.Generator().manual_seed(0))
    other = make_batch(TASK, 1, 64, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(again, (inputs, x0, masked, p_mask, fillable)))
    assert not torch.equal(other[1], x0)



@pytest.mark.parametrize("kw, msg", [
    ({"data_seed": TEST_SEED}, "test set"), ({"preset": "huge"}, "preset"), ({"latents": 1}, "latents"),
    ({"observations": 10**6}, "observations"), ({"steps": None}, "steps, minutes"), ({"data_seed": -1}, "data_seed"),
    ({"positions": "rotary"}, "positions"),
])
def test_the_config_refuses(kw, msg):
    with pytest.raises(ValueError, match=msg):
        NAETrainConfig(**{"steps": 5, **kw})


@pytest.mark.parametrize("positions", ["learned", "clauses"])
def test_training_lowers_the_loss_and_resumes_exactly(tmp_path, positions):
    kw = dict(preset="tiny", positions=positions, latents=6, observations=10, structure_seed=4, batch_size=32,
              lr=3e-3, warmup_steps=5, eval_every=0, save_every=0, log_every=1, threads=1)
    quiet = lambda m: None  # noqa: E731
    r = train(NAETrainConfig(steps=80, out=str(tmp_path / "a"), **kw), log=quiet)
    losses = [h["loss"] for h in r["history"]]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    whole = train(NAETrainConfig(steps=6, out=str(tmp_path / "w"), **{**kw, "save_every": 3}), log=quiet)
    train(NAETrainConfig(steps=6, stop_after=3, out=str(tmp_path / "p"), **{**kw, "save_every": 3}), log=quiet)
    part = train(NAETrainConfig(steps=6, out=str(tmp_path / "p"), **{**kw, "save_every": 3}), resume=True, log=quiet)
    for a, b in zip(whole["model"].state_dict().values(), part["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    model, task, cfg = load(tmp_path / "p")
    assert task == TASK and cfg["trained"]["steps"] == 6 and cfg["train"]["positions"] == positions
    assert model.config.positions == ("learned" if positions == "learned" else "nae-clauses-6-10-3-4")


# ---------------------------------------------------------------- evaluation protocol
@pytest.mark.parametrize("strategy", ["random", "confidence", "margin", "entropy"])
def test_the_exact_posterior_generates_only_consistent_sequences_in_every_order(strategy):
    rows = ev.evaluate(PosteriorOracle(TASK), TASK, 40, strategies=[strategy], seed=3)
    r = rows[0]
    assert r["n"] == 40 and r["observation_acc"] == 1.0 and r["consistent"] == 1.0
    assert r["calls_per_sequence"] == TASK.length


@pytest.mark.parametrize("strategy", ["random", "margin"])
def test_infilling_keeps_what_is_given_and_the_exact_posterior_completes_it_consistently(strategy):
    start = ev.starting_rows(TASK, 30, given=0.5, seed=2)
    visible = start != MASK_ID
    assert 0.3 < visible.float().mean() < 0.7
    tr = ev.generate_samples(PosteriorOracle(TASK), TASK, 30, strategy=strategy, seed=2, given=0.5)
    assert torch.equal(tr.tokens[visible], start[visible]) and (tr.order[visible] == -1).all()
    (r,) = ev.evaluate(PosteriorOracle(TASK), TASK, 30, strategies=[strategy], seed=2, given=0.5)
    assert r["consistent"] == 1.0 and r["decoded_observation_acc"] == 1.0 and r["given"] == 0.5
    assert 0.0 <= r["decoded_latent_match"] <= 1.0 and 0.0 <= r["decoded_observation_match"] <= 1.0
    assert r["calls_per_sequence"] < TASK.length
    with pytest.raises(ValueError, match="given"):
        ev.starting_rows(TASK, 2, given=1.0)


def test_infill_rows_give_the_share_of_decoded_latents_and_observations_equal_to_the_test_sequences():
    truth = torch.from_numpy(engine.generate(4, TASK, TEST_SEED)).long()
    order = torch.full(truth.shape, -1)
    order[:, :4] = torch.arange(4)                  # rows decode latents 0-3 ...
    order[:, TASK.latents:TASK.latents + 5] = torch.arange(4, 9)   # ... and observations 0-4
    tokens = truth.clone()
    tokens[:2, 0] = 1 - tokens[:2, 0]              # 2 of 16 decoded latents differ from the test sequences
    tokens[0, TASK.latents] = 1 - tokens[0, TASK.latents]   # 1 of 20 decoded observations does
    r = ev.summarize(Trace(tokens, order, 9), TASK, "margin", truth.numpy())
    assert r["decoded_latent_match"] == pytest.approx(14 / 16)
    assert r["decoded_observation_match"] == pytest.approx(19 / 20)
    assert "decoded_latent_match" not in ev.summarize(Trace(tokens, order, 9), TASK, "margin")
    table = ev.format_table([r], TASK)
    assert "decoded latents = test's" in table and "87.50%" in table and "95.00%" in table
    assert "decoded latents = test's" not in ev.format_table([ev.summarize(Trace(tokens, order, 9), TASK, "m")], TASK)


def test_always_writing_one_scores_about_three_quarters_and_random_order_spreads_the_latents():
    task = Task()   # the paper's (25, 275): P(not all equal) = 3/4 per clause
    (r,) = ev.evaluate(AlwaysOne(task), task, 64, strategies=["random"], k=25, seed=0)
    assert 0.72 < r["observation_acc"] < 0.78 and r["consistent"] == 0.0
    assert r["decoded_observation_ones"] == 1.0
    assert 0.04 < r["latents_first"] < 0.13          # N / L = 0.083
    lo, hi = r["observation_acc_ci95"]
    assert lo < r["observation_acc"] < hi and r["calls_per_sequence"] == 12


def test_margin_order_writes_latents_first_with_the_exact_posterior():
    # latents and observations have margin 0 and 0.5 at the start; once observations pin the latents down
    # the oracle's margin picks the determined ones, so the order is not random
    (r,) = ev.evaluate(PosteriorOracle(TASK), TASK, 30, strategies=["margin"], seed=1)
    (rnd,) = ev.evaluate(PosteriorOracle(TASK), TASK, 30, strategies=["random"], seed=1)
    assert r["latent_rank"] != pytest.approx(rnd["latent_rank"], abs=1e-3)


def test_token_accuracy_of_the_exact_posterior_is_perfect_where_the_clause_is_visible():
    rows = ev.token_accuracy(PosteriorOracle(TASK), TASK, 200, rates=(0.2, 0.6))
    for row in rows:
        assert row["observation_determined_acc"] == 1.0 and row["observation_determined_count"] > 0
        assert 0.4 < row["latent_acc"] <= 1.0 and row["latent_count"] > 0
    assert ev.format_token_table(rows).count("\n") == 3


# ---------------------------------------------------------------- commands
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("nae") / "ckpt"
    assert main(["nae", "train", "--preset", "tiny", *SMALL, "--steps", "4", "--batch-size", "8", "--eval-every", "0",
                 "--save-every", "4", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_eval_writes_the_table_json_markdown_and_plot(tiny_checkpoint, tmp_path, capsys):
    j, md, png = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    assert main(["nae", "eval", "--checkpoint", str(tiny_checkpoint), "--n", "6", "--strategies", "random,margin",
                 "--k", "4", "--given", "0.3", "--token-accuracy", "20", "--json", str(j), "--markdown", str(md),
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| random |" in out and "| margin |" in out and "masked latents right" in out
    data = json.loads(j.read_text())
    assert [r["strategy"] for r in data["rows"]] == ["random", "margin"] and data["task"]["latents"] == 6
    assert all(r["given"] == 0.3 for r in data["rows"]) and "30% of their positions visible" in out
    assert data["trained"]["steps"] == 4 and "command" in data and len(data["token_accuracy"]) == 5
    assert md.read_text().startswith("L&O-NAE-SAT") and png.read_bytes()[:4] == b"\x89PNG"


def test_solve_fills_every_mask_and_keeps_what_is_given(tiny_checkpoint, tmp_path, capsys):
    seqs = engine.generate(5, TASK, seed=2)
    partial = seqs.copy()
    partial[:, :3] = MASK_ID
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    from fastmdm.nae import files
    src.write_text(files.format_lines(partial, TASK))
    code = main(["nae", "solve", str(src), "--checkpoint", str(tiny_checkpoint), "--out", str(out)])
    filled, task, _ = files.read_text(str(out))
    assert task == TASK and (filled != MASK_ID).all() and np.array_equal(filled[:, 3:], seqs[:, 3:])
    assert code == (0 if engine.check(filled, TASK).ok.all() else 1)
    whole = tmp_path / "whole.txt"
    whole.write_text(files.format_lines(seqs, TASK))
    assert main(["nae", "solve", str(whole), "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 0
    assert np.array_equal(files.read_text(str(out))[0], seqs)


def test_the_model_commands_refuse_bad_input(tiny_checkpoint, tmp_path, capsys):
    other = tmp_path / "other.txt"
    from fastmdm.nae import files
    other.write_text(files.format_lines(engine.generate(2, Task(latents=7, observations=10), seed=0),
                                        Task(latents=7, observations=10)))
    ck = ["--checkpoint", str(tiny_checkpoint)]
    assert "not the checkpoint's" in failing(["nae", "solve", str(other), *ck], capsys, 1)
    assert "--k and --threshold" in failing(["nae", "eval", *ck, "--k", "2", "--threshold", "0.5"], capsys, 2)
    assert "--checkpoint" in failing(["nae", "eval", "--checkpoint", str(tmp_path / "none")], capsys, 1)
    assert "--data-seed" in failing(["nae", "train", "--steps", "2", "--data-seed", str(TEST_SEED), "--out",
                                   str(tmp_path / "x")], capsys, 2)
    assert "--steps, --minutes" in failing(["nae", "train", "--out", str(tmp_path / "x")], capsys, 2)
    assert "--strategies" in failing(["nae", "eval", *ck, "--strategies", "best"], capsys, 2)
    assert "--given" in failing(["nae", "eval", *ck, "--given", "1.5"], capsys, 2)
    if not torch.cuda.is_available():
        assert "--device" in failing(["nae", "eval", *ck, "--device", "cuda"], capsys, 2)
    assert "--device" in failing(["nae", "solve", str(other), *ck, "--device", "tpu"], capsys, 2)
    from fastmdm.checkpoint import save_model
    from fastmdm.sudoku.model import sudoku_model
    save_model(tmp_path / "sudoku", sudoku_model("tiny"))
    assert "L&O-NAE-SAT task" in failing(["nae", "eval", "--checkpoint", str(tmp_path / "sudoku")], capsys, 1)
