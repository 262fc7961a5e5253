"""Unsupervised classifier-free guidance (LLaDA's) as a model wrapper the engine calls like any model."""
from __future__ import annotations

import torch

from fastmdm.engine import call_model, has_hidden_path


class CFGModel:
    """logits = un + (s + 1) (cond - un), where `un` is the model's output with the prompt masked; both halves
    run in one model call of twice the batch.

    The LM head is affine, so with the hidden-state path the guided logits are head((s + 1) h_cond - s h_un)
    (the bias carries through): guidance then needs no [B, L, V] logits. The wrapper holds the full batch's
    prompt positions, so the engine must call it on the whole batch (``skip_finished_rows=False``).
    """

    def __init__(self, model, scale: float, prompt_index: torch.Tensor, mask_id: int):
        self.model, self.scale, self.prompt_index, self.mask_id = model, scale, prompt_index, mask_id
        if has_hidden_path(model):
            self.forward_hidden = self._forward_hidden
            self.get_output_embeddings = model.get_output_embeddings

    def _both(self, x, attention_mask, use_hidden):
        un = x.masked_fill(self.prompt_index, self.mask_id)
        am = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
        return call_model(self.model, torch.cat([x, un]), am, use_hidden).chunk(2)

    def __call__(self, x, attention_mask=None):
        cond, uncond = self._both(x, attention_mask, use_hidden=False)
        return uncond + (self.scale + 1) * (cond - uncond)

    def _forward_hidden(self, x, attention_mask=None):
        cond, uncond = self._both(x, attention_mask, use_hidden=True)
        return (self.scale + 1) * cond - self.scale * uncond


def prompt_positions(prompt_ids: torch.Tensor, total_length: int, mask_id: int) -> torch.Tensor:
    """[B, total_length] bool: the prompt's real (non-mask) tokens, which guidance masks in the unconditional half."""
    index = torch.zeros(prompt_ids.shape[0], total_length, dtype=torch.bool, device=prompt_ids.device)
    index[:, :prompt_ids.shape[1]] = prompt_ids != mask_id
    return index
