import json
import os

import pytest
import torch
from safetensors.torch import load_file

from fastmdm import checkpoint as ckpt
from fastmdm.models import Transformer, TransformerConfig

TINY = dict(vocab_size=10, mask_token_id=0, max_len=81, d_model=32, n_layers=2, n_heads=2, d_ff=64)


def tiny():
    return Transformer(TransformerConfig(**TINY))


def test_a_saved_model_loads_back_with_identical_outputs(tmp_path):
    torch.manual_seed(1)
    m = tiny().eval()
    ckpt.save_model(tmp_path / "c", m, extra={"note": "hello"})
    m2, cfg = ckpt.load_model(tmp_path / "c")
    x = torch.randint(0, 10, (2, 81))
    assert torch.equal(m(x), m2(x))
    assert cfg["note"] == "hello" and cfg["model"]["d_model"] == m.config.d_model


def test_checkpoint_files_are_safetensors_and_json_with_no_temporary_leftovers(tmp_path):
    m = tiny()
    ckpt.save_model(tmp_path, m)
    ckpt.save_model(tmp_path, m)  # overwriting goes through os.replace as well
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    assert set(load_file(str(tmp_path / "model.safetensors"))) == set(m.state_dict())
    json.loads((tmp_path / "config.json").read_text())


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "x.json"
    ckpt.atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        ckpt.atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_bfloat16_storage_halves_the_file_and_loads_as_float32(tmp_path):
    m = tiny()
    ckpt.save_model(tmp_path / "f", m)
    ckpt.save_model(tmp_path / "h", m, dtype=torch.bfloat16)
    a, b = (os.path.getsize(tmp_path / d / "model.safetensors") for d in "fh")
    assert b < 0.6 * a
    m2, _ = ckpt.load_model(tmp_path / "h")
    assert next(m2.parameters()).dtype == torch.float32


def test_optimizer_state_round_trips_exactly(tmp_path):
    torch.manual_seed(0)
    m = tiny()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    for _ in range(2):
        m(torch.randint(0, 10, (2, 81))).sum().backward()
        opt.step()
    tensors, meta = ckpt.optimizer_tensors(opt)
    ckpt.atomic_save_tensors(tmp_path / "o.safetensors", tensors)
    opt2 = torch.optim.AdamW(m.parameters(), lr=1e-3)
    ckpt.load_optimizer_tensors(opt2, load_file(str(tmp_path / "o.safetensors")), json.loads(json.dumps(meta)))
    for k, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(opt2.state_dict()["state"][k][name]))


def test_loading_a_directory_without_a_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        ckpt.load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        ckpt.load_model(tmp_path / "absent")
    ckpt.save_model(tmp_path / "c", tiny())
    with pytest.raises(FileNotFoundError, match="is a file; pass the directory"):
        ckpt.load_model(tmp_path / "c" / "model.safetensors")
    (tmp_path / "c" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        ckpt.load_model(tmp_path / "c")


def _damage(directory, how):
    f = directory / ("config.json" if how in ("json", "section") else "model.safetensors")
    if how == "truncate":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "garbage":
        f.write_bytes(b"\x00" * 64)
    elif how == "json":
        f.write_text(f.read_text()[:-20])
    elif how == "section":
        f.write_text(json.dumps({"model": {**TINY, "d_model": "wide"}}))
    elif how == "nan":
        state = load_file(str(f))
        state["tok_emb.weight"][3, 5] = float("nan")
        from safetensors.torch import save_file
        save_file(state, str(f))
    return f.name


@pytest.mark.parametrize("how", ["truncate", "garbage", "json", "nan"])
def test_a_damaged_checkpoint_says_it_looks_corrupted_and_names_the_file(tmp_path, how):
    ckpt.save_model(tmp_path, tiny())
    name = _damage(tmp_path, how)
    with pytest.raises(ckpt.CheckpointError, match=f"checkpoint {tmp_path} looks corrupted: {name}"):
        ckpt.load_model(tmp_path)


def test_a_config_with_a_bad_model_section_names_the_field(tmp_path):
    ckpt.save_model(tmp_path, tiny())
    _damage(tmp_path, "section")
    with pytest.raises(ckpt.CheckpointError, match="d_model"):
        ckpt.load_model(tmp_path)


def test_weights_that_do_not_match_the_config_are_rejected(tmp_path):
    ckpt.save_model(tmp_path, tiny())
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model"]["positions"] = "rotary"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match"):
        ckpt.load_model(tmp_path)


def test_checkpoint_files_get_ordinary_permissions_not_the_temporary_files_0600(tmp_path):
    ckpt.save_model(tmp_path, tiny())
    umask = os.umask(0)
    os.umask(umask)
    for f in ("model.safetensors", "config.json"):
        assert (os.stat(tmp_path / f).st_mode & 0o777) == (0o666 & ~umask)
