"""Triton kernels behind `fastmdm.ops` (import as ``fastmdm.kernels``, never a bare ``kernels``).

select     fused masked-token selection: one pass over the vocabulary per gathered row (max, argmax,
           second max, log-sum-exp, entropy, Gumbel-max draw), the same straight from hidden states and
           the LM head, and per-row top-n / threshold position selection.
attention  non-causal flash attention forward and backward with key padding and grouped-query heads.
loss       weighted cross-entropy fused with the LM head, chunked over rows (gradients in the forward).

Kernels decide between Triton's interpreter and the GPU when they are first imported: on CPU set
TRITON_INTERPRET=1 before importing them.
"""
