"""Token-id corpora from a toy task: its training answers, e.g. for PC-Sampler's
token-frequency prior (`token_frequency_prior(answer_token_ids(...), vocab_size)`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lookum_jax.tasks.base import Task
from lookum_jax.tasks.tokenizer import encode_example

if TYPE_CHECKING:  # for type hints only: importing transformers takes seconds
  import transformers

# Far from the held-out seed (987_654_321) and from training's per-step seeds.
CORPUS_SEED = 123_456


def answer_token_ids(task: Task, tokenizer: transformers.PreTrainedTokenizerBase,
                     num_examples: int = 1000, gen_length: int | None = None,
                     seed: int = CORPUS_SEED) -> np.ndarray:
  """`[num_examples, gen_length]` int32 token ids of freshly generated training answers of
  `task` (reference responses, EOS-padded to `gen_length` as in training): the positions a
  sampler decodes, so their token frequencies are the prior PC-Sampler calibrates against."""
  if not isinstance(num_examples, int) or num_examples <= 0:
    raise ValueError(f"num_examples must be a positive int, got {num_examples!r}.")
  examples = task.generate(num_examples, seed)
  return np.stack([encode_example(task, ex, tokenizer, gen_length)[1] for ex in examples])
