"""Invariants every strategy must keep, checked on random prompts and keys (hypothesis).

Configs come from the shared setups (one per strategy, fixed shapes), so each strategy
compiles once and hypothesis varies only prompts and keys. NFE is checked against the
forward passes actually made, counted by a `jax.debug.callback` inside the model function.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookum_jax.sampling import SamplerConfig, decode, generate
from lookum_jax.sampling.strategies import Strategy, commit_top_k
from lookum_jax.testing import (
    MODEL_CONFIG,
    STRATEGY_CONFIGS,
    decode_kwargs,
    make_prompts,
    random_model,
)

UNSCHEDULED = ("threshold", "entropy_bounded")
PROPERTY_SETTINGS = settings(max_examples=6, deadline=None, derandomize=True)


@functools.cache
def model():
  return random_model(MODEL_CONFIG)


def run(strategy: str, prompt_seed: int, key_seed: int):
  config = STRATEGY_CONFIGS[strategy]
  prompt = make_prompts(prompt_seed)
  result = generate(model(), prompt, config, jax.random.key(key_seed))
  return config, prompt, jax.tree.map(np.asarray, result)


def check_invariants(config: SamplerConfig, prompt: np.ndarray, result) -> None:
  prompt_length = prompt.shape[1]
  tokens, order = result.tokens, result.unmask_order
  response_order = order[:, prompt_length:]
  # The prompt is returned untouched and never gets a commit step.
  np.testing.assert_array_equal(tokens[:, :prompt_length], prompt)
  assert np.all(order[:, :prompt_length] == -1)
  # Every response position is committed, to a real token, at a step that was taken.
  assert np.all(response_order >= 0)
  assert np.all(response_order < result.num_steps[:, None])
  assert not np.any(tokens[:, prompt_length:] == MODEL_CONFIG.mask_token_id)
  # Blocks are decoded strictly left to right: block b only after block b-1 finished.
  blocks = response_order.reshape(len(prompt), config.num_blocks, config.block_length)
  assert np.all(blocks[:, 1:].min(axis=-1) > blocks[:, :-1].max(axis=-1))
  commits = np.stack([np.bincount(row, minlength=config.max_steps) for row in response_order])
  if config.strategy.uses_schedule:
    # The per-step commit counts are LLaDA's schedule, block after block.
    schedule = np.tile(config.block_schedule(), config.num_blocks)
    np.testing.assert_array_equal(commits, np.broadcast_to(schedule, commits.shape))
    assert np.all(result.num_steps == config.steps)
  else:
    # At least one commit per step taken, so a block always progresses.
    for row, steps in zip(commits, result.num_steps, strict=True):
      assert np.all(row[:steps] >= 1) and np.all(row[steps:] == 0)
  assert np.all(result.nfe == result.num_steps * (2 if config.cfg_scale > 0 else 1))


@pytest.mark.parametrize("strategy", sorted(STRATEGY_CONFIGS))
@PROPERTY_SETTINGS
@given(prompt_seed=st.integers(0, 2**16), key_seed=st.integers(0, 2**16))
def test_invariants(strategy, prompt_seed, key_seed):
  check_invariants(*run(strategy, prompt_seed, key_seed))


@pytest.mark.parametrize("strategy", UNSCHEDULED)
def test_unscheduled_strategies_commit_in_parallel(strategy):
  """Threshold / EB do commit several tokens per step here (the setups are not degenerate:
  a strategy stuck at one token per step would pass the invariants above)."""
  config = STRATEGY_CONFIGS[strategy]
  steps = [run(strategy, seed, 0)[2].num_steps for seed in range(4)]
  assert np.min(steps) < config.gen_length


def jit_decode(model_fn, config: SamplerConfig, prompt: np.ndarray, key):
  # Build the (cached) model before tracing: built inside the trace, its weights would be
  # tracers, cached past the trace (whatever test of this file runs first calls this).
  kwargs = decode_kwargs(model(), config)
  return jax.tree.map(np.asarray, jax.jit(lambda p, k: decode(
      model_fn, p, None, k, config, **kwargs))(prompt, key))


def count_forward_passes(config: SamplerConfig, prompt: np.ndarray, key):
  """Runs jitted `decode`; returns (result, rows of each model call actually made)."""
  calls = []
  model_ = model()

  def counting_model(tokens, mask):
    rows = tokens.shape[0]
    jax.debug.callback(lambda: calls.append(rows))
    return model_(tokens, mask)

  result = jit_decode(counting_model, config, prompt, key)
  jax.effects_barrier()
  return result, calls


def test_finished_rows_spend_no_more_nfe():
  """Threshold with CFG: rows finish at different steps; NFE counts each row's own
  forward passes (two per step with CFG), and matches the passes made."""
  config = STRATEGY_CONFIGS["threshold"].replace(cfg_scale=1.0)
  prompt, key = make_prompts(3, batch=3), jax.random.key(0)
  result, calls = count_forward_passes(config, prompt, key)
  steps = result.num_steps
  assert len(set(steps.tolist())) > 1, "pick a seed where rows finish at different steps"
  # Blocks are synchronised across the batch: one batched call (conditional +
  # unconditional rows) per step while a row is still in the block, the block's first
  # step served by its opening forward. A row commits at least one position of the block
  # per step, so its steps in a block are the distinct steps its block positions got.
  order = result.unmask_order[:, prompt.shape[1]:].reshape(
      len(prompt), config.num_blocks, config.block_length)
  block_steps = np.asarray([[len(np.unique(block)) for block in row] for row in order])
  np.testing.assert_array_equal(block_steps.sum(axis=1), steps)
  assert calls == [2 * len(prompt)] * int(block_steps.max(axis=0).sum())
  np.testing.assert_array_equal(result.nfe, 2 * steps)
  # The row that finishes first gets the same tokens and NFE alone (its own key).
  first = int(np.argmin(steps))
  alone = generate(model(), prompt[first:first + 1], config,
                   jax.random.fold_in(key, first)[None])
  np.testing.assert_array_equal(np.asarray(alone.tokens)[0], result.tokens[first])
  assert int(alone.nfe[0]) == result.nfe[first] < result.nfe.max()


def test_nfe_equals_forward_passes_scheduled():
  config = STRATEGY_CONFIGS["margin"]
  result, calls = count_forward_passes(config, make_prompts(0), jax.random.key(0))
  assert calls == [2] * config.steps  # one call for the batch of 2 per step
  np.testing.assert_array_equal(result.nfe, [config.steps] * 2)


def test_mask_token_is_never_committed_even_when_predicted():
  """A model that puts almost all its mass on the mask token still gets real tokens."""
  mask_id = MODEL_CONFIG.mask_token_id
  config = STRATEGY_CONFIGS["low_confidence"]
  result = jit_decode(lambda t, m: model()(t, m).at[..., mask_id].add(30.0), config,
                      make_prompts(0), jax.random.key(0))
  check_invariants(config, make_prompts(0), result)


@dataclasses.dataclass(frozen=True)
class Polite(Strategy):
  """Commits the single most confident eligible position per step."""

  name = "test_polite"

  @property
  def uses_schedule(self) -> bool:
    return False

  def select(self, view, key):
    return commit_top_k(view.certainty, view, jnp.int32(1))


@dataclasses.dataclass(frozen=True)
class Rogue(Polite):
  """Polite's choice, plus a request to (re-)commit every position it may not: those already
  committed and those of later blocks (fresh samples there would differ)."""

  name = "test_rogue"

  def select(self, view, key):
    return super().select(view, key) | ~view.eligible


def test_loop_never_rewrites_prompt_or_committed_tokens():
  config = STRATEGY_CONFIGS["low_confidence"].replace(temperature=2.0, block_length=8)
  prompt, key = make_prompts(2), jax.random.key(2)
  polite = jit_decode(lambda t, m: model()(t, m), config.replace(strategy=Polite()),
                      prompt, key)
  rogue = jit_decode(lambda t, m: model()(t, m), config.replace(strategy=Rogue()),
                     prompt, key)
  np.testing.assert_array_equal(rogue.tokens, polite.tokens)
  np.testing.assert_array_equal(rogue.unmask_order, polite.unmask_order)
  np.testing.assert_array_equal(rogue.tokens[:, :prompt.shape[1]], prompt)
