"""Dream-7B: a config of the one transformer class, `lookum_jax.model.llada.LLaDA`.

Dream differs from LLaDA in four ways, all carried by `ModelConfig` (`architecture="dream"`):
grouped-query attention with biases on the q/k/v projections (Qwen2, `qkv_bias`), its own
mask token (151666) and norm/RoPE constants (eps 1e-6, theta 1e6), an output head that may be
tied to the embedding (`tie_word_embeddings`), and shifted logits (the output at position i-1
predicts token i). `LLaDA` implements all four; its sharding rules (with the q/k/v biases)
are `lookum_jax.model.sharding.DREAM_RULES`. This module only keeps the name `Dream` for
readers coming from Dream's repository; nothing in the package imports it.
"""

from __future__ import annotations

from lookum_jax.model.llada import LLaDA, shift_logits

Dream = LLaDA
"""The one transformer class; a Dream config (`architecture="dream"`) selects Dream."""

__all__ = ["Dream", "shift_logits"]
