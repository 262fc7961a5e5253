"""The L&O-NAE-SAT position scheme 'clauses': an observation's vector is built from its clause's latents' vectors."""
import pytest
import torch

from fastmdm.checkpoint import save_model
from fastmdm.models import get_positions
from fastmdm.nae import engine
from fastmdm.nae.engine import Task
from fastmdm.nae.model import load, nae_model
from fastmdm.nae.positions import scheme_name

TASK = Task(latents=7, observations=10, arity=3, structure_seed=4)
TRAIN = {"latents": 7, "observations": 10, "arity": 3, "structure_seed": 4}


def test_latents_get_their_vector_and_observations_the_sum_over_their_clause():
    torch.manual_seed(0)
    model = nae_model(TASK, "tiny", "clauses")
    assert model.config.positions == "nae-clauses-7-10-3-4" == scheme_name(TASK)
    pos = model.position_scheme.embed(model, 0, TASK.length, "cpu")
    role, lat, obs = model.role_emb.weight, model.latent_emb.weight, model.obs_emb.weight
    for i in range(TASK.latents):
        torch.testing.assert_close(pos[i], role[0] + lat[i])
    for j, clause in enumerate(TASK.clauses):
        want = role[1] + lat[int(clause[0])] + lat[int(clause[1])] + lat[int(clause[2])] + obs[j]
        torch.testing.assert_close(pos[TASK.latents + j], want)
    assert torch.equal(model.position_scheme.embed(model, 3, 12, "cpu"), pos[3:12])


def test_an_observation_shares_a_latents_vector_only_through_its_clause():
    """Moving one latent's vector moves exactly the observations whose clause holds that latent."""
    torch.manual_seed(1)
    model = nae_model(TASK, "tiny", "clauses")
    before = model.position_scheme.embed(model, 0, TASK.length, "cpu").detach().clone()
    with torch.no_grad():
        model.latent_emb.weight[2] += 1.0
    moved = (model.position_scheme.embed(model, 0, TASK.length, "cpu") - before).abs().amax(1) > 0.5
    holds = torch.tensor([2 in set(map(int, c)) for c in TASK.clauses])
    assert moved[:TASK.latents].tolist() == [i == 2 for i in range(TASK.latents)]
    assert torch.equal(moved[TASK.latents:], holds) and holds.any() and not holds.all()


def test_a_checkpoint_of_the_scheme_loads_with_the_same_outputs(tmp_path):
    torch.manual_seed(2)
    model = nae_model(TASK, "tiny", "clauses").eval()
    save_model(tmp_path / "ck", model, extra={"train": TRAIN})
    loaded, task, _ = load(tmp_path / "ck")
    x = torch.from_numpy(engine.generate(3, TASK, seed=5)).long()
    x[:, ::3] = engine.MASK_ID
    assert task == TASK and loaded.config.positions == scheme_name(TASK)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_the_family_builds_a_scheme_per_task_and_refuses_the_rest():
    assert get_positions("nae-clauses-9-20-3-1").task == Task(9, 20, 3, 1)
    with pytest.raises(ValueError, match="not a registered position scheme"):
        get_positions("nae-clauses-9-20")
    with pytest.raises(ValueError, match="max_len=17"):
        from fastmdm.training import sequence_mdm
        sequence_mdm({"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}, engine.VOCAB_SIZE, engine.MASK_ID,
                     TASK.length + 1, positions=scheme_name(TASK))
    with pytest.raises(ValueError, match="positions: unknown 'rotary'"):
        nae_model(TASK, "tiny", "rotary")
