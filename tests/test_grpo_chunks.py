"""The chunked GRPO update (`GRPOConfig.update_chunk`): the same loss, metrics, gradients
and old log-probabilities as the all-at-once program, for chunks that divide the (row, step)
pair count and chunks that do not (padded with zero-weight pairs)."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import hand_built_trajectory

import policy_rl
from policy_rl.grpo import GRPOConfig, expert_rows, grpo_loss_and_grad, trajectory_log_probs
from policy_rl.policy import PolicyConfig
from policy_rl.strategy import PolicyParams

# 2 prompts x (2 rollouts + 1 expert row) = 6 rows x 4 steps = 24 (row, step) pairs.
CONFIG = GRPOConfig(group_size=2, expert_rows=1)
VALID = [[True, True, False, False], [True, True, True, True], [True, False, False, False]] * 2


@pytest.fixture(scope="module")
def setup():
  policy = policy_rl.init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32,
                                              time_frequencies=16, output_bias=0.3))
  # A non-zero head, so the gradients reach every layer.
  policy.head.kernel[...] = jax.random.normal(jax.random.key(1), policy.head.kernel.shape)
  graphdef, policy_params = nnx.split(policy)
  trajectory = hand_built_trajectory(2, VALID, positions=5, eligible_rate=0.7)
  expert = expert_rows(2, CONFIG)
  mask = jnp.ones((6, 5), bool).at[0, 0].set(False)  # a per-row attention mask follows its row
  current = jax.jit(lambda: trajectory_log_probs(policy, PolicyParams(), trajectory, mask,
                                                 expert, CONFIG.mixture_weights))()
  # Old log-probs off the current ones, so ratios differ from 1 and some are clipped.
  noise = 0.4 * jax.random.normal(jax.random.key(2), current.shape)
  old = current + jnp.where(trajectory.eligible & trajectory.valid[..., None], noise, 0.0)
  advantages = jnp.array([1.0, -0.5, 0.7, -1.2, 0.4, 0.9])
  return graphdef, policy_params, trajectory, mask, expert, current, old, advantages


# Chunks that do not divide the 24 pairs: 4 chunks of 7 (4 padded), 5 chunks of 5 (1 padded).
@pytest.mark.parametrize("ratio_level, chunk", [("step", 7), ("position", 5)])
def test_chunked_update_equals_all_at_once(setup, ratio_level, chunk):
  graphdef, policy_params, trajectory, mask, expert, _, old, advantages = setup
  config = dataclasses.replace(CONFIG, ratio_level=ratio_level)

  @jax.jit
  def both(policy_params):
    return [grpo_loss_and_grad(graphdef, policy_params, PolicyParams(),
                               dataclasses.replace(config, update_chunk=chunk), trajectory,
                               mask, advantages, old, expert)
            for chunk in (None, chunk)]

  reference, chunked = both(policy_params)
  (loss, metrics), grads = reference
  assert 0 < float(metrics["clip_fraction"]) < 1  # clipping is exercised
  assert float(jnp.abs(grads["feature_proj"]["kernel"][...]).max()) > 0  # reaches the input
  chex.assert_trees_all_close(chunked, reference, rtol=1e-5, atol=1e-7)


def test_chunked_log_probs_equal_all_at_once(setup):
  graphdef, policy_params, trajectory, mask, expert, current, _, _ = setup
  policy = nnx.merge(graphdef, policy_params)
  chunked = jax.jit(lambda: trajectory_log_probs(policy, PolicyParams(), trajectory, mask,
                                                 expert, CONFIG.mixture_weights, chunk=5))()
  np.testing.assert_allclose(chunked, current, rtol=1e-6, atol=1e-7)  # 5 x 5 pairs, 1 padded


@pytest.mark.parametrize("chunk", [0, -4, 2.5, True, "512"])
def test_bad_chunk_is_refused_with_the_fix(setup, chunk):
  with pytest.raises(ValueError, match="update_chunk must be a positive int .* or None"):
    GRPOConfig(update_chunk=chunk)
  graphdef, policy_params, trajectory, *_ = setup
  with pytest.raises(ValueError, match="chunk must be a positive int .* or None"):
    trajectory_log_probs(nnx.merge(graphdef, policy_params), PolicyParams(), trajectory, None,
                         chunk=chunk)
