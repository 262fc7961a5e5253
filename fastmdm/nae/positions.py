"""The L&O-NAE-SAT position scheme ``"nae-clauses-N-P-k-S"``: an observation's position is built from its clause.

An L&O-NAE-SAT distribution fixes its clauses once (the task's ``structure_seed``): observation j is always the NAE
of the same k latents. With one learned vector per position ("learned") each of the P observations must find its
own k latents by gradient descent, a sparse-parity-like signal that kept the first CPU run at the marginals'
loss for about 900 steps. This scheme states the structure the way the Sudoku model's row + column + box vectors
state the grid's:

- latent i gets the "latent" role vector plus ``latent_emb[i]``;
- observation j gets the "observation" role vector plus the sum of ``latent_emb[i]`` over its clause's latents,
  plus a vector of its own (``obs_emb[j]``, so the scheme can express anything learned positions can).

Observation j's position then contains the vectors of its clause's latents from the first step, and one shared
query-key map that matches like with like lets every observation attend to its clause at once, instead of 275
separate patterns to discover. The model still has to learn NAE, and inferring latents from observations (the
hard subproblems adaptive decoding avoids) is untouched: the scheme only tells the model which tokens share a
clause. The name carries the task (latents, observations, arity, structure seed), so a checkpoint's config says
what it was built for; importing this module registers the family.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from fastmdm.models.positions import PositionScheme, register_position_family
from fastmdm.nae.engine import VOCAB_SIZE, Task

PREFIX = "nae-clauses-"


def scheme_name(task: Task) -> str:
    return f"{PREFIX}{task.latents}-{task.observations}-{task.arity}-{task.structure_seed}"


class NAEClausePositions(PositionScheme):
    def __init__(self, task: Task):
        self.task = task
        self.name = scheme_name(task)

    def check_config(self, config):
        if config.max_len != self.task.length:
            raise ValueError(f"TransformerConfig.max_len: positions={self.name!r} needs max_len={self.task.length} "
                             f"(the task's sequence length), got {config.max_len}")
        if config.vocab_size != VOCAB_SIZE:
            raise ValueError(f"TransformerConfig.vocab_size: positions={self.name!r} needs the L&O-NAE-SAT "
                             f"vocabulary ({VOCAB_SIZE}), got {config.vocab_size}")

    def add_to(self, model, config):
        t = self.task
        model.role_emb = nn.Embedding(2, config.d_model)
        model.latent_emb = nn.Embedding(t.latents, config.d_model)
        model.obs_emb = nn.Embedding(t.observations, config.d_model)
        nn.init.normal_(model.obs_emb.weight, std=0.02)   # small: the clause sum speaks first
        role = torch.cat([torch.zeros(t.latents), torch.ones(t.observations)]).long()
        model.register_buffer("nae_role", role, persistent=False)
        model.register_buffer("nae_clauses", torch.tensor(t.clauses.astype("int64")), persistent=False)

    def check_length(self, length, config):
        return None if length == self.task.length else f"a {self.name} model takes exactly {self.task.length} tokens"

    def embed(self, model, start, end, device):
        latents = model.latent_emb.weight
        clause = latents[model.nae_clauses].sum(1) + model.obs_emb.weight      # [P, d]
        table = torch.cat([latents, clause], 0) + model.role_emb(model.nae_role)
        return table[start:end].to(device)


def _from_name(name: str) -> NAEClausePositions | None:
    m = re.fullmatch(rf"{PREFIX}(\d+)-(\d+)-(\d+)-(\d+)", name)
    if not m:
        return None
    return NAEClausePositions(Task(int(m[1]), int(m[2]), int(m[3]), int(m[4])))


register_position_family(PREFIX, _from_name)
