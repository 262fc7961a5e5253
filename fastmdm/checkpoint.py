"""Checkpoints as safetensors + a JSON config, written atomically; nothing is ever unpickled.

A checkpoint is a directory:
- ``model.safetensors``: the model's parameters (float32 unless saved otherwise);
- ``config.json``: ``{"model": <TransformerConfig dict>, ...}`` plus whatever metadata the caller adds;
- optionally ``trainer.safetensors`` + ``trainer.json``: optimizer state and counters for exact resume.

Every file is written to a temporary name in the same directory and moved into place with `os.replace`,
so a reader never sees a half-written file. Reading one that is missing raises FileNotFoundError; one that
is damaged (unreadable JSON or safetensors, weights that do not fit the config, NaN or infinite weights)
raises `CheckpointError`, whose message says "checkpoint DIR looks corrupted" and names the file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINER_FILE = "trainer.safetensors"
TRAINER_META = "trainer.json"


class CheckpointError(ValueError):
    """A checkpoint directory whose files exist but cannot be used."""


def _corrupted(directory, name: str, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {directory} looks corrupted: {name} {why}; write it again "
                           "(or restore it from a copy)")


def _check_directory(directory) -> Path:
    path = Path(directory)
    if path.is_file():
        raise FileNotFoundError(f"checkpoint {path} is a file; pass the directory that holds {CONFIG_FILE} and "
                                f"{MODEL_FILE} (here {path.parent})")
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path}: no such directory; pass a directory that "
                                "fastmdm.checkpoint.save_model wrote")
    return path


def read_json(directory, name: str) -> dict:
    """The JSON object in `directory / name`; `CheckpointError` when it is not one."""
    path = Path(directory) / name
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _corrupted(directory, name, f"is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _corrupted(directory, name, f"holds a JSON {type(obj).__name__}, not an object")
    return obj


def read_tensors(directory, name: str, device="cpu") -> dict:
    """The tensors of `directory / name` (safetensors); `CheckpointError` when the file is damaged."""
    path = Path(directory) / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory}: no {name}")
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error type for a damaged file)
        raise _corrupted(directory, name, f"cannot be read ({e})") from None


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
    _atomic(Path(path), write)


def atomic_write_text(path, text: str) -> None:
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_save_npz(path, arrays: dict) -> None:
    """An uncompressed `.npz` with fixed zip timestamps (the same arrays give the same bytes), written atomically."""
    import zipfile  # noqa: PLC0415  (only data commands write npz)

    import numpy as np  # noqa: PLC0415

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)
    _atomic(Path(path), write)


def atomic_save_tensors(path, tensors: dict, metadata: dict | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _unwrap(model):
    return getattr(model, "module", model)


def save_model(directory, model, *, extra: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write model.safetensors and config.json into `directory`; `dtype` (e.g. torch.bfloat16) stores
    floating-point weights in that dtype to save space. Returns the directory."""
    model = _unwrap(model)
    directory = Path(directory)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    atomic_save_tensors(directory / MODEL_FILE, state)
    atomic_write_json(directory / CONFIG_FILE, {"model": model.config.to_dict(), **(extra or {})})
    return directory


def read_config(directory) -> dict:
    path = _check_directory(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory}: no {CONFIG_FILE}; pass a directory that "
                                "fastmdm.checkpoint.save_model wrote (config.json + model.safetensors)")
    return read_json(directory, CONFIG_FILE)


def load_model(directory, *, map_location: str | torch.device = "cpu"):
    """(model in eval mode, config dict) from a checkpoint directory."""
    from fastmdm.models import Transformer, TransformerConfig  # noqa: PLC0415

    cfg = read_config(directory)
    if not isinstance(cfg.get("model"), dict):
        raise _corrupted(directory, CONFIG_FILE, "has no 'model' section")
    try:
        config = TransformerConfig.from_dict(cfg["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {directory}: {CONFIG_FILE}'s model section: {e}") from None
    model = Transformer(config)
    state = read_tensors(directory, MODEL_FILE, map_location)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ from the config's
        raise _corrupted(directory, MODEL_FILE, f"does not match {CONFIG_FILE} ({e})") from None
    if missing or unexpected:
        raise _corrupted(directory, MODEL_FILE, f"does not match {CONFIG_FILE} (missing {missing}, "
                                                f"unexpected {unexpected})")
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise _corrupted(directory, MODEL_FILE, f"holds NaN or infinite values in {name}")
    return model.to(map_location).eval(), cfg


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """An optimizer's state as flat tensors + JSON-able metadata (param groups)."""
    sd = optimizer.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for name, value in st.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"state.{pid}.{name}"] = t
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
