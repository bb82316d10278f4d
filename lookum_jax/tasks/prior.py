"""A token-frequency prior (PC-Sampler's calibration) from a toy task's training answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lookum_jax.sampling.strategies.pc_sampler import token_frequency_prior
from lookum_jax.tasks.base import Task
from lookum_jax.tasks.tokenizer import encode_example

if TYPE_CHECKING:  # for type hints only: importing transformers takes seconds
  import transformers

# Far from the held-out seed (987_654_321) and from training's per-step seeds.
PRIOR_SEED = 123_456


def answer_token_prior(task: Task, tokenizer: transformers.PreTrainedTokenizerBase,
                       vocab_size: int, num_examples: int = 1000, gen_length: int | None = None,
                       seed: int = PRIOR_SEED) -> np.ndarray:
  """The `[vocab_size]` frequencies of the tokens in `num_examples` fresh training answers of
  `task` (reference responses, EOS-padded to `gen_length` as in training), for
  `PCSampler(prior=...)`: the answer positions are what the sampler decodes, so EOS padding
  and frequent digits get a low surprisal, rare tokens a high one."""
  if not isinstance(num_examples, int) or num_examples <= 0:
    raise ValueError(f"num_examples must be a positive int, got {num_examples!r}.")
  examples = task.generate(num_examples, seed)
  answers = [encode_example(task, ex, tokenizer, gen_length)[1] for ex in examples]
  return token_frequency_prior(np.stack(answers), vocab_size)
