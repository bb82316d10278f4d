"""lookum-jax: decoding masked diffusion language models in JAX/Flax.

The names below are imported on first use (PEP 562), so `import lookum_jax` (and with it
`lookum --help`) does not load JAX.
"""

import importlib
import importlib.util

_EXPORTS = {
    "load_model": "lookum_jax.loading", "load_tokenizer": "lookum_jax.loading",
    "save_model": "lookum_jax.loading", "LLaDA": "lookum_jax.model",
    "ModelConfig": "lookum_jax.model", "init_model": "lookum_jax.model",
    "GenerationResult": "lookum_jax.sampling", "SamplerConfig": "lookum_jax.sampling",
    "generate": "lookum_jax.sampling", "NoCache": "lookum_jax.sampling",
    "PrefixCache": "lookum_jax.sampling", "DualCache": "lookum_jax.sampling",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
  if not name.startswith("_") and importlib.util.find_spec(f"lookum_jax.{name}"):
    return importlib.import_module(f"lookum_jax.{name}")  # a submodule: `lj.sampling.X`
  raise AttributeError(f"module 'lookum_jax' has no attribute {name!r}")


def __dir__():
  return sorted([*globals(), *_EXPORTS])
