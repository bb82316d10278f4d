"""Dream-7B: the same transformer class as LLaDA, driven by its config's flags.

Dream differs from LLaDA in four ways, all carried by `ModelConfig` (`architecture="dream"`):
grouped-query attention with biases on the q/k/v projections (Qwen2, `qkv_bias`), its own
mask token (151666) and norm/RoPE constants (eps 1e-6, theta 1e6), an output head that may be
tied to the embedding (`tie_word_embeddings`), and shifted logits (the output at position i-1
predicts token i). `lookum_jax.model.llada.LLaDA` implements all four; this module keeps
Dream's sharding rules (the q/k/v biases) and the name `Dream` for readers coming from its
repository.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from lookum_jax.model.llada import LLaDA
from lookum_jax.model.sharding import LLADA_RULES, MODEL_AXIS, ShardingRules

DREAM_RULES: ShardingRules = (
    # q/k/v biases follow their kernels' output split.
    (r"blocks/\d+/(q_proj|k_proj|v_proj)/bias", P(MODEL_AXIS)),
    *LLADA_RULES,
)

Dream = LLaDA
"""The one transformer class; a Dream config (`architecture="dream"`) selects Dream."""


def shift_logits(logits: jax.Array) -> jax.Array:
  """Dream's alignment of raw outputs `[B, T, V]` with the canvas: the output at position
  i - 1 predicts token i, and position 0 keeps its own (`cat([l[:, :1], l[:, :-1]])`, as
  Dream's `diffusion_generate`)."""
  return jnp.concatenate([logits[:, :1], logits[:, :-1]], axis=1)
