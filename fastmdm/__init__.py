"""fastmdm: fast adaptive decoding, fused kernels and training for masked diffusion models."""
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from fastmdm import adapters, compat, engine, ops
from fastmdm.engine import Trace, decode
from fastmdm.loss import mdm_loss, mdm_loss_from_hidden, sample_mask
from fastmdm.runtime import keep_freed_memory
from fastmdm.sampling import generate, sample
from fastmdm.strategies import STRATEGIES

try:  # one version source: the installed package's metadata (pyproject.toml)
    __version__ = _dist_version("fastmdm")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
__all__ = ["sample", "generate", "Trace", "STRATEGIES", "mdm_loss", "mdm_loss_from_hidden", "sample_mask", "ops",
           "adapters", "compat", "engine", "decode", "keep_freed_memory"]
