"""The Zebra position scheme ``"zebra-MxN-K"``: positions that say what a place means, not where it is.

A sequence is K clue slots of five tokens, then the M x N cells (`fastmdm.zebra.engine`). Its positions:
- a clue token gets the vector of its role in the slot (relation, attribute, value, attribute or house, value),
  the same for every slot, plus its slot's vector, the same for the five tokens of a slot, which is how a token
  finds the rest of its clue (without it no token can tell its own slot's tokens from another's: a first
  version without slot vectors, session 8, stayed at chance for 1,800 steps);
- cell (h, a) gets a "cell" role vector plus the **token embeddings** of house h and attribute a, the same
  vectors the clues use to name that house and that attribute. A clue ``attribute a = value v at house h``
  and the cell it places then share two of their three parts from the first step.

``zebra-clues-...`` adds to every token of a clue the clue itself: the sum over its five tokens of a
role-specific embedding and of the token's own embedding (`embed_named`, from the input), so from the first layer
a cell can find a clue that names its house and attribute in one attention step instead of first gathering the
clue's tokens. The token embeddings are the ones a cell's position is made of, so a clue naming house h and
attribute a and the cell (h, a) share those two vectors from the first step, as an observation and its clause's
latents do in the L&O-NAE-SAT scheme.

The scheme has one name per shape, ``zebra-{M}x{N}-{K}`` (``zebra-clues-{M}x{N}-{K}``), so a checkpoint's
config says what it was built for; importing this module registers the family (`register_position_family`),
which is what lets such a checkpoint load. Parameters: ``role_emb`` (6 vectors), ``slot_emb`` (K vectors), the
model's own ``tok_emb``, and for ``clues`` ``clue_emb`` (one vocabulary-sized table per role, 5 x V vectors).
"""
from __future__ import annotations

import re

import torch
from torch import nn

from fastmdm.models.positions import PositionScheme, register_position_family
from fastmdm.zebra.engine import ATTRIBUTE_BASE, CLUE_TOKENS, HOUSE_BASE, VOCAB_SIZE, Task

PREFIX = "zebra-"
CELL_ROLE = CLUE_TOKENS          # role index of a cell; 0..CLUE_TOKENS-1 are the clue tokens' roles


def scheme_name(task: Task, clues: bool = False) -> str:
    return f"{PREFIX}{'clues-' if clues else ''}{task.houses}x{task.attributes}-{task.max_clues}"


class ZebraPositions(PositionScheme):
    def __init__(self, houses: int, attributes: int, max_clues: int, clues: bool = False):
        self.task = Task(houses=houses, attributes=attributes, max_clues=max_clues)
        self.clues = clues
        self.name = scheme_name(self.task, clues)

    def check_config(self, config):
        if config.max_len != self.task.length:
            raise ValueError(f"TransformerConfig.max_len: positions={self.name!r} needs max_len={self.task.length} "
                             f"(the task's sequence length), got {config.max_len}")
        if config.vocab_size != VOCAB_SIZE:
            raise ValueError(f"TransformerConfig.vocab_size: positions={self.name!r} needs the Zebra vocabulary "
                             f"({VOCAB_SIZE}), got {config.vocab_size}")

    def add_to(self, model, config):
        t = self.task
        model.role_emb = nn.Embedding(CLUE_TOKENS + 1, config.d_model)
        model.slot_emb = nn.Embedding(t.max_clues, config.d_model)
        if self.clues:
            model.clue_emb = nn.Embedding(CLUE_TOKENS * VOCAB_SIZE, config.d_model)
        role = torch.cat([torch.arange(t.clue_length) % CLUE_TOKENS, torch.full((t.cells,), CELL_ROLE)])
        slot = torch.cat([torch.arange(t.clue_length) // CLUE_TOKENS, torch.full((t.cells,), -1)])
        cell = torch.arange(t.cells)
        house = torch.cat([torch.full((t.clue_length,), -1), HOUSE_BASE + cell // t.attributes])
        attribute = torch.cat([torch.full((t.clue_length,), -1), ATTRIBUTE_BASE + cell % t.attributes])
        for name, idx in (("zebra_role", role), ("zebra_slot", slot), ("zebra_house", house),
                          ("zebra_attribute", attribute)):
            model.register_buffer(name, idx.long(), persistent=False)

    def check_length(self, length, config):
        return None if length == self.task.length else f"a {self.name} model takes exactly {self.task.length} tokens"

    def embed(self, model, start, end, device):
        role = model.role_emb(model.zebra_role[start:end])
        house, attribute = model.zebra_house[start:end], model.zebra_attribute[start:end]
        is_cell = (house >= 0).unsqueeze(-1)
        names = model.tok_emb(house.clamp_min(0)) + model.tok_emb(attribute.clamp_min(0))
        slots = model.slot_emb(model.zebra_slot[start:end].clamp_min(0))
        return role + torch.where(is_cell, names, slots)


    def embed_named(self, model, input_ids, start, end):
        if not self.clues:
            return None
        t = self.task
        B = input_ids.shape[0]
        slots = input_ids[:, t.clue_positions].long().view(B, t.max_clues, CLUE_TOKENS)
        ids = slots + torch.arange(CLUE_TOKENS, device=input_ids.device) * VOCAB_SIZE   # role r's table
        # the clue's own token embeddings too: a cell (h, a) carries tok_emb[h] + tok_emb[a], so one shared
        # query-key map that matches like with like finds the clues naming its house and attribute
        clue = model.clue_emb(ids).sum(2) + model.tok_emb(slots).sum(2)                 # [B, K, d]
        per_token = clue.repeat_interleave(CLUE_TOKENS, dim=1)                          # [B, 5K, d]
        out = torch.cat([per_token, per_token.new_zeros(B, t.cells, per_token.shape[-1])], 1)
        return out[:, start:end]


def _from_name(name: str) -> ZebraPositions | None:
    m = re.fullmatch(rf"{PREFIX}(clues-)?(\d+)x(\d+)-(\d+)", name)
    return ZebraPositions(int(m[2]), int(m[3]), int(m[4]), clues=bool(m[1])) if m else None


register_position_family(PREFIX, _from_name)
