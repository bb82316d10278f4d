"""Where training prompts come from and how a rollout is judged correct.

An environment gives the prompts of each train step (a pure function of the seed and the step,
so a resumed run sees the same prompts) and scores decoded rows: `correct(tokens [B, P + L],
batch, group_size) -> [B]` floats in [0, 1], row `r` answering prompt `r // group_size`.

- `BanditEnvironment`: random prompts for any model; correctness "always" (the reward only
  measures speed: the best action, unmasking everything, is known) or "reference" (the row
  equals the dLLM's own one-token-per-step greedy decode: a speed/accuracy trade-off that
  needs no trained model).
- `TaskEnvironment`: a `lookum_jax.tasks` task, its character tokenizer and exact checker.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import numpy as np

from lookum_jax.decoding import encode_prompts, response_texts, score_responses
from lookum_jax.sampling.config import SamplerConfig
from lookum_jax.sampling.loop import generate
from lookum_jax.sampling.strategies import LowConfidence
from lookum_jax.tasks.tokenizer import left_pad_prompts

BANDIT_CORRECTNESS = ("always", "reference")


@dataclasses.dataclass
class PromptBatch:
  """`ids [N, P]` int32 left-padded prompts, `mask [N, P]` bool (false on padding), and
  whatever the environment needs to score them (`examples`)."""

  ids: np.ndarray
  mask: np.ndarray | None
  examples: Any = None


class Environment(Protocol):
  prompt_length: int
  gen_length: int

  def prompts(self, step: int, num_prompts: int) -> PromptBatch: ...

  def correct(self, tokens: np.ndarray, batch: PromptBatch, group_size: int) -> np.ndarray: ...


class BanditEnvironment:
  """Random prompts of `prompt_length` tokens for a model with `model.config`."""

  def __init__(self, model, *, gen_length: int = 16, block_length: int | None = None,
               prompt_length: int = 8, correct: str = "always", seed: int = 0):
    if correct not in BANDIT_CORRECTNESS:
      raise ValueError(
          f"bandit option correct must be one of {BANDIT_CORRECTNESS}, got {correct!r}.")
    if not isinstance(prompt_length, int) or prompt_length <= 0:
      raise ValueError(f"bandit option prompt_length must be a positive int, got "
                       f"{prompt_length!r}.")
    self.model, self.seed, self.kind = model, seed, correct
    self.prompt_length, self.gen_length = prompt_length, gen_length
    config = model.config
    self._special = sorted({config.mask_token_id, config.eos_token_id, config.pad_token_id,
                            *config.stop_token_ids})
    self._reference_config = SamplerConfig(
        gen_length=gen_length, block_length=block_length or gen_length, steps=gen_length,
        strategy=LowConfidence())

  def prompts(self, step: int, num_prompts: int) -> PromptBatch:
    rng = np.random.default_rng([self.seed, step])
    vocab = np.setdiff1d(np.arange(self.model.config.vocab_size), self._special)
    ids = rng.choice(vocab, size=(num_prompts, self.prompt_length)).astype(np.int32)
    return PromptBatch(ids=ids, mask=None)

  def correct(self, tokens: np.ndarray, batch: PromptBatch, group_size: int) -> np.ndarray:
    if self.kind == "always":
      return np.ones((tokens.shape[0],), np.float32)
    reference = generate(self.model, batch.ids, self._reference_config, jax.random.key(0))
    expected = np.repeat(np.asarray(reference.tokens), group_size, axis=0)
    return np.all(tokens == expected, axis=1).astype(np.float32)


class TaskEnvironment:
  """A verifiable toy task (`lookum_jax.tasks`) decoded with its character tokenizer."""

  def __init__(self, task, tokenizer, *, gen_length: int | None = None, seed: int = 0,
               stop_token_ids: tuple[int, ...] | None = None):
    self.task, self.tokenizer, self.seed = task, tokenizer, seed
    self.gen_length = task.gen_length if gen_length is None else gen_length
    self.prompt_length = task.prompt_length
    self.stop_token_ids = stop_token_ids

  def prompts(self, step: int, num_prompts: int) -> PromptBatch:
    from lookum_jax.training.data import step_seed

    examples = self.task.generate(num_prompts, step_seed(self.seed, step))
    prompts = encode_prompts(self.tokenizer, self.task, examples)
    ids, mask = left_pad_prompts(prompts, self.prompt_length, self.tokenizer.pad_token_id)
    return PromptBatch(ids=ids, mask=mask, examples=examples)

  def correct(self, tokens: np.ndarray, batch: PromptBatch, group_size: int) -> np.ndarray:
    texts = response_texts(self.tokenizer, np.asarray(tokens)[:, batch.ids.shape[1]:],
                           self.stop_token_ids)
    problems = [batch.examples[row // group_size] for row in range(len(texts))]
    scores = score_responses(self.task, problems, texts)
    return np.asarray(scores, np.float32)


def make_environment(config, model) -> Environment:
  """The environment of a `PolicyTrainConfig` for the loaded dLLM `model`."""
  from policy_rl.config import BANDIT

  options = dict(config.task_options)
  if config.task == BANDIT:
    unknown = sorted(set(options) - {"prompt_length", "correct"})
    if unknown:
      raise ValueError(f"task 'bandit' has no option(s) {unknown}; its options are: "
                       "prompt_length, correct.")
    return BanditEnvironment(model, gen_length=config.gen_length or 16,
                             block_length=config.block_length, seed=config.seed, **options)
  from lookum_jax.tasks import build_tokenizer, get_task, load_tokenizer
  from lookum_jax.tasks.tokenizer import TOKENIZER_FILES

  task = get_task(config.task, **options)
  tokenizer = build_tokenizer()
  if config.model != "random":
    from lookum_jax.loading import resolve_path

    directory = resolve_path(config.model)
    if all((directory / name).is_file() for name in TOKENIZER_FILES):
      tokenizer = load_tokenizer(directory)
  return TaskEnvironment(task, tokenizer, gen_length=config.gen_length, seed=config.seed,
                         stop_token_ids=tuple(model.config.stop_token_ids))
