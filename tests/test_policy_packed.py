"""The trainer's packed GRPO updates (`grpo.grpo_updates`): all of a batch's updates in one
program on the (row, step) pairs that can move the loss give the updates of the reference
path (a no-gradient pass for the old log-probabilities, then `grpo_update` per update on the
whole trajectory), in chunks with padding."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import hand_built_trajectory

import policy_rl
from policy_rl.grpo import (
  GRPOConfig,
  PolicyTrainState,
  expert_rows,
  grpo_update,
  grpo_updates,
  pack_pairs,
  trajectory_log_probs,
)
from policy_rl.policy import PolicyConfig
from policy_rl.strategy import PolicyParams

# 2 prompts x (2 rollouts + 1 expert row) = 6 rows x 4 steps; 14 valid pairs, 7 trained.
CONFIG = GRPOConfig(group_size=2, expert_rows=1, updates_per_batch=2)
VALID = [[True, True, False, False], [True, True, True, True], [True, False, False, False]] * 2
# Prompt 1's group has all-equal rewards: zero advantages, left out of the packing.
ADVANTAGES = jnp.array([1.0, -0.5, -0.5, 0.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def setup():
  policy = policy_rl.init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32,
                                              time_frequencies=16, output_bias=0.3))
  policy.head.kernel[...] = jax.random.normal(jax.random.key(1), policy.head.kernel.shape)
  graphdef, params = nnx.split(policy)
  # Plain SGD with momentum: parameters move linearly in the gradients, so their tolerance is
  # the gradients' (Adam's normalisation would magnify float noise in near-zero gradients).
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.5, momentum=0.9))
  state = PolicyTrainState(params=params, opt_state=tx.init(params),
                           step=jnp.zeros((), jnp.int32))
  trajectory = hand_built_trajectory(3, VALID, positions=5, eligible_rate=0.7)
  mask = jnp.ones((6, 5), bool).at[0, 0].set(False)
  return graphdef, tx, state, trajectory, mask, expert_rows(2, CONFIG)


def reference_updates(setup, config):
  graphdef, tx, state, trajectory, mask, expert = setup
  old = trajectory_log_probs(nnx.merge(graphdef, state.params), PolicyParams(), trajectory,
                             mask, expert, config.mixture_weights)
  history = []
  for _ in range(config.updates_per_batch):
    state, metrics = grpo_update(graphdef, tx, PolicyParams(), config, state, trajectory, mask,
                                 ADVANTAGES, old, expert)
    history.append(metrics)
  return state, history


# One case (each compiles two programs): per-position ratios, 2 chunks of 4 with 1 padded pair.
# The step-level ratio shares every line but the weights with the chunked reference path that
# tests/test_grpo_chunks.py checks.
def test_packed_updates_equal_the_reference(setup, ratio_level="position", chunk=4):
  graphdef, tx, state, trajectory, mask, expert = setup
  config = dataclasses.replace(CONFIG, ratio_level=ratio_level, update_chunk=chunk)
  trains = np.asarray(trajectory.valid) & (np.asarray(ADVANTAGES) != 0)[:, None]
  index = pack_pairs(trains, chunk)
  assert int(index.real.sum()) == 7 and index.size == 8  # 2 chunks of 4, or one of 8
  packed, metrics = jax.jit(lambda s: grpo_updates(
      graphdef, tx, PolicyParams(), config, s, trajectory, mask, ADVANTAGES, expert, index))(
          state)
  reference, history = jax.jit(lambda: reference_updates(
      setup, dataclasses.replace(config, update_chunk=None)))()
  chex.assert_trees_all_close(packed.params, reference.params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(packed.opt_state, reference.opt_state, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(packed.params["feature_proj"]["kernel"][...]
                       - state.params["feature_proj"]["kernel"][...]).max()) > 1e-3
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose(metrics[key], np.mean([m[key] for m in history]), rtol=1e-5)
  # The first update's ratio is exactly 1; the second's has moved.
  assert 0 < float(metrics["approx_kl"]) and float(metrics["ratio"]) != 1.0


def test_pack_pairs_layout_and_errors():
  index = pack_pairs(np.array([[True, False, True], [False, True, False]]), chunk=None)
  np.testing.assert_array_equal(index.rows, [0, 0, 1] + [1] * 5)
  np.testing.assert_array_equal(index.steps, [0, 2, 1] + [1] * 5)
  np.testing.assert_array_equal(index.real, [True] * 3 + [False] * 5)
  empty = pack_pairs(np.zeros((2, 3), bool), chunk=4)
  assert empty.size == 4 and not bool(empty.real.any())
  with pytest.raises(ValueError, match=r"trains must be \[rows, steps\]"):
    pack_pairs(np.zeros(3, bool), chunk=4)
