"""Small random LLaDA models whose predictions are sharp enough to test samplers with."""

from __future__ import annotations

from typing import Any

from lookum_jax.model import LLaDA
from lookum_jax.model.random_init import random_model  # noqa: F401  (tests import it from here)
from lookum_jax.sampling.config import SamplerConfig


def decode_kwargs(model: LLaDA, config: SamplerConfig) -> dict[str, Any]:
  """The token-id keyword arguments `decode` takes, as `generate` derives them."""
  model_config = model.config
  mask = config.mask_token_id if config.mask_token_id is not None else model_config.mask_token_id
  return dict(mask_token_id=int(mask), eos_token_id=int(model_config.eos_token_id),
              stop_token_ids=tuple(int(i) for i in model_config.stop_token_ids))
