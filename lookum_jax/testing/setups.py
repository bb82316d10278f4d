"""Shared sampling setups for tests: one model config and one sampler config per strategy.

Every config here runs at the same shapes (batch 2, prompt 5, response 16), so test files
run in one process reuse each other's compiled programs and eager-op caches.
"""

from __future__ import annotations

import numpy as np

from lookum_jax.model import tiny
from lookum_jax.sampling.config import SamplerConfig
from lookum_jax.sampling.strategies import (
    Entropy,
    EntropyBounded,
    Margin,
    RandomOrder,
    Threshold,
)

# EOS/EOT set to tokens the seed-0 `random_model` often predicts, so EOS options matter.
MODEL_CONFIG = tiny(eos_token_id=19, eot_token_id=101)
BATCH, PROMPT_LENGTH, GEN_LENGTH = 2, 5, 16

STRATEGY_CONFIGS = {
    "low_confidence": SamplerConfig(gen_length=GEN_LENGTH, block_length=16, steps=16,
                                    temperature=1.0),
    "random": SamplerConfig(gen_length=GEN_LENGTH, block_length=16, steps=5, temperature=0.5,
                            strategy=RandomOrder()),
    "margin": SamplerConfig(gen_length=GEN_LENGTH, block_length=4, steps=8, strategy=Margin(),
                            confidence_eos_eot_inf=True),
    "entropy": SamplerConfig(gen_length=GEN_LENGTH, block_length=16, steps=16,
                             temperature=0.5, strategy=Entropy()),
    "threshold": SamplerConfig(gen_length=GEN_LENGTH, block_length=8, strategy=Threshold(tau=0.5),
                               temperature=0.5),
    "entropy_bounded": SamplerConfig(gen_length=GEN_LENGTH, block_length=8,
                                     strategy=EntropyBounded(gamma=2.0)),
}


def make_prompts(seed: int, batch: int = BATCH, length: int = PROMPT_LENGTH) -> np.ndarray:
  """Random int32 prompts `[batch, length]` of ordinary tokens (no mask/EOS/EOT ids)."""
  rng = np.random.default_rng(seed)
  ordinary = np.setdiff1d(np.arange(MODEL_CONFIG.vocab_size - 3),
                          [MODEL_CONFIG.eos_token_id, MODEL_CONFIG.eot_token_id])
  return rng.choice(ordinary, (batch, length)).astype(np.int32)
