"""Argument checks shared by `fastmdm.sample`, `fastmdm.generate` and every drop-in.

Each check raises a `TypeError` (wrong kind of value) or `ValueError` (right kind, bad value) whose message
starts with the argument's name and says what to pass instead.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from fastmdm import ops

#: integer dtypes accepted for token ids
INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)


def check_int(name: str, value, minimum: int = 1) -> None:
    """`value` is None or an int >= `minimum` (bools are refused)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")


def check_number(name: str, value, *, low: float = 0.0, high: float = math.inf, low_open: bool = False,
                 high_open: bool = False, allow_none: bool = False) -> None:
    """`value` is a real number (not NaN, not a bool) in the interval from `low` to `high`."""
    if value is None and allow_none:
        return
    text = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
    if high == math.inf:
        text = f"{'>' if low_open else '>='} {low:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name}: must be a number {text}, got {value!r}")
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        raise ValueError(f"{name}: must be {text}, got {value}")


def check_llada_blocks(steps, gen_length, block_length) -> None:
    """LLaDA's layout: positive ints, gen_length a multiple of block_length, steps a multiple of the blocks."""
    for name, v in (("steps", steps), ("gen_length", gen_length), ("block_length", block_length)):
        check_int(name, v)
    if gen_length % block_length:
        raise ValueError(f"block_length: gen_length={gen_length} is not a multiple of block_length={block_length}; "
                         f"pick a block_length that divides gen_length (e.g. {math.gcd(gen_length, block_length)}) "
                         "or change gen_length")
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ValueError(f"steps: {steps} is not a multiple of the {num_blocks} blocks (gen_length // block_length); "
                         f"pass steps={max(num_blocks, steps - steps % num_blocks)} or another multiple of "
                         f"{num_blocks}")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: must be True or False, got {value!r}")


def check_token_id(name: str, value) -> int:
    """A token id: an int >= 0 (a one-element integer tensor is accepted and converted)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_floating_point:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: must be an int token id, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name}: must be a token id >= 0, got {value}")
    return value


def check_token_ids(name: str, x, hint: str = "") -> torch.Tensor:
    """A 2-D integer tensor of token ids [B, L]; returned as int64."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a LongTensor [B, L] of token ids, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name}: must be 2-D [B, L], got shape {tuple(x.shape)}; "
                         f"add a batch dimension with {name}[None] for one sequence{hint}")
    if x.dtype not in INTEGER_DTYPES:
        raise TypeError(f"{name}: must hold integer token ids (torch.long), got {x.dtype}")
    return x.long()


def check_attention_mask(attention_mask, shape: tuple, what: str = "the batch's") -> None:
    """None, or a tensor of `shape` holding only 0 (padding) and 1 (real token), of any dtype."""
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(shape):
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask: must be a tensor of {what} shape {tuple(shape)} "
                         f"(1 = real token, 0 = padding), got {got}")
    if attention_mask.dtype != torch.bool and attention_mask.numel() and \
            not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        bad = attention_mask[(attention_mask != 0) & (attention_mask != 1)].flatten()[0].item()
        raise ValueError(f"attention_mask: must hold only 0 (padding) and 1 (real token), found {bad!r}; "
                         "pass a 0/1 (or bool) mask")


def unpack_batch(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input_ids int64 [B, L], attention_mask or None) from a tensor or a mapping with 'input_ids'."""
    attention_mask = None
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise ValueError("batch: a mapping must hold 'input_ids' (and optionally 'attention_mask')")
        x, attention_mask = batch["input_ids"], batch.get("attention_mask")
    else:
        x = batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"batch: expected a LongTensor [B, L] or a mapping with 'input_ids', got {type(x).__name__}")
    x = check_token_ids("batch", x)
    check_attention_mask(attention_mask, x.shape)
    return x, attention_mask


def resolve_mask_id(model, mask_id) -> int:
    """`mask_id`, or the model's `config.mask_token_id` when None."""
    if mask_id is None:
        mask_id = getattr(getattr(model, "config", None), "mask_token_id", None)
        if mask_id is None:
            raise ValueError("mask_id: not given and the model has no config.mask_token_id; "
                             "pass mask_id=<the id of the mask token>")
    return check_token_id("mask_id", mask_id)


def check_sampling(temperature, score_noise, backend, generator) -> None:
    """The options every decoding entry point shares."""
    check_number("temperature", temperature)
    check_number("score_noise", score_noise)
    ops.check_backend(backend)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: must be a torch.Generator, got {type(generator).__name__}")


def model_vocab_size(model) -> int | None:
    """The model's vocabulary size where it can be read without a call: its input embeddings, else
    config.vocab_size; None when neither is there."""
    get = getattr(model, "get_input_embeddings", None)
    if callable(get):
        try:
            emb = get()
        except (NotImplementedError, AttributeError, TypeError):
            emb = None
        weight = getattr(emb, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            return int(weight.shape[0])
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def check_token_in_vocab(name: str, token_id: int, vocab: int | None, fix: str) -> None:
    if vocab is not None and token_id >= vocab:
        raise ValueError(f"{name}: {token_id} is outside the model's vocabulary of {vocab} tokens; {fix}")


def model_device(model) -> torch.device | None:
    """The device of the model's weights (its first parameter, or its LM head's), None when unknown."""
    params = getattr(model, "parameters", None)
    if callable(params):
        try:
            first = next(iter(params()), None)
        except (TypeError, StopIteration):
            first = None
        if isinstance(first, torch.Tensor):
            return first.device
    head = getattr(model, "get_output_embeddings", None)
    if callable(head):
        weight = getattr(head(), "weight", None)
        if isinstance(weight, torch.Tensor):
            return weight.device
    return None


def check_devices(model, x: torch.Tensor) -> None:
    """The batch and the model's weights on one device (and not on `meta`)."""
    dev = model_device(model)
    if dev is None:
        return
    if dev.type == "meta":
        raise ValueError("model: its weights are on the 'meta' device (created without data); load the weights "
                         "(e.g. model.to_empty(device=...) then load a checkpoint) before decoding")
    if x.device.type == "meta":
        raise ValueError("batch: is on the 'meta' device and holds no tokens; pass a real tensor")
    if dev.type != x.device.type or (dev.index is not None and x.device.index is not None and dev != x.device):
        raise ValueError(f"batch: is on {x.device} but the model's weights are on {dev}; move one of them "
                         f"(e.g. batch.to('{dev}'))")
