"""Random LLaDA weights that behave like a trained model's: O(1) activations and peaked
predictions. Tests use them to exercise samplers, and the policy trainer's "random" dLLM is
one (`PolicyTrainConfig(model="random")`)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lookum_jax.model.config import ModelConfig, tiny
from lookum_jax.model.llada import LLaDA, abstract_model


def random_model(config: ModelConfig | None = None, seed: int = 0, *, logit_scale: float = 3.0,
                 attention_scale: float = 3.0, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32) -> LLaDA:
  """A random LLaDA (default: `tiny()`) with O(1) activations and peaked predictions.

  The default 0.02 init makes every masked position predict almost the same near-uniform
  distribution, so confidences tie to float precision and a sampler's choices hinge on
  rounding. Here kernels are `N(0, 1/fan_in)`, embeddings `N(0, 1)`, norm weights
  `1 + N(0, 0.1^2)`, the head is scaled by `logit_scale` (logits std about
  `logit_scale`) and q/k kernels by `attention_scale` (peaked attention, so the RoPE
  position shows in the output): masked positions then predict different tokens and
  confidences spread over (0, 1).
  """
  config = tiny() if config is None else config
  # Shapes only, filled from numpy: no JAX RNG ops to compile one by one.
  model = abstract_model(config, dtype=dtype, param_dtype=param_dtype)
  rng = np.random.default_rng(seed)
  state = nnx.state(model, nnx.Param)
  flat = nnx.to_flat_state(state)
  for path, variable in flat:
    shape = variable.get_value().shape
    name = path[-1]
    if name == "weight":  # RMSNorm scale
      value = 1.0 + 0.1 * rng.standard_normal(shape)
    elif name == "wte":
      value = rng.standard_normal(shape)
    else:  # kernels [in, out] and the output head [d_model, vocab]
      value = rng.standard_normal(shape) / np.sqrt(shape[0])
      if path == ("ff_out",):
        value = value * logit_scale
      elif name == "kernel" and path[-2] in ("q_proj", "k_proj"):
        value = value * attention_scale
    variable.set_value(jnp.asarray(value, param_dtype))
  nnx.update(model, nnx.from_flat_state(flat))
  return model
