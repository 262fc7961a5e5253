"""Triton kernels behind `fastmdm.ops` (import as ``fastmdm.kernels``, never a bare ``kernels``).

select     the selection entry points: token_stats, linear_token_stats (re-exported) and per-row top-n /
           threshold position selection (select_positions).
stats_logits  token statistics in one pass over the vocabulary per gathered row of logits (max, argmax,
           second max, log-sum-exp, entropy, Gumbel-max draw); stats_linear: the same straight from
           hidden states and the LM head; stats: the partial record and merge both share.
attention  non-causal flash attention forward and backward with key padding and grouped-query heads.
loss       weighted cross-entropy fused with the LM head, chunked over rows (gradients in the forward).

Kernels decide between Triton's interpreter and the GPU when they are first imported: on CPU set
TRITON_INTERPRET=1 before importing them.
"""
