"""Expert rows added to GRPO groups, scored under the mixture that drew them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import hand_built_trajectory

import policy_rl
from policy_rl.grpo import GRPOConfig, expert_rows, grpo_loss, trajectory_log_probs
from policy_rl.policy import PolicyConfig
from policy_rl.strategy import PolicyParams


@pytest.fixture(scope="module")
def setup():
  policy = policy_rl.init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32,
                                              time_frequencies=16))
  trajectory = hand_built_trajectory(1, [[True, True, False]] * 2 + [[True, True, True]] * 2,
                                     positions=6, eligible_rate=0.7)
  return policy, trajectory


def test_expert_rows_are_the_last_e_of_each_group():
  config = GRPOConfig(group_size=3, expert_rows=2)
  assert config.rows_per_prompt == 5
  np.testing.assert_array_equal(expert_rows(2, config),
                                [0, 0, 0, 1, 1, 0, 0, 0, 1, 1])
  legacy = GRPOConfig(group_size=3, expert_steering=True)
  np.testing.assert_array_equal(expert_rows(2, legacy), [1, 0, 0, 1, 0, 0])


def test_mixture_log_probs_match_numpy(setup):
  policy, trajectory = setup
  params = PolicyParams()
  expert = jnp.array([False, True, False, True])
  config = GRPOConfig(group_size=6, expert_rows=2)
  w_policy, w_expert = config.mixture_weights
  assert (w_policy, w_expert) == (6 / 8, 1 / 8)
  plain = np.asarray(trajectory_log_probs(policy, params, trajectory, None))
  mixed = np.asarray(trajectory_log_probs(policy, params, trajectory, None, expert,
                                          config.mixture_weights))
  decided = np.asarray(trajectory.eligible & trajectory.valid[..., None])
  want = plain.copy()
  rows = np.asarray(expert)
  want[rows] = np.where(decided[rows], np.log(w_policy * np.exp(plain[rows]) + w_expert),
                        plain[rows])
  np.testing.assert_allclose(mixed, want, rtol=1e-5, atol=1e-6)
  # Policy rows are untouched; an expert decision the policy finds unlikely is floored at
  # log(1/(G+E)), so its ratio cannot explode.
  np.testing.assert_array_equal(mixed[~rows], plain[~rows])
  assert np.all(mixed[rows][decided[rows]] >= np.log(w_expert) - 1e-6)


def test_correction_off_scores_expert_rows_as_policy_samples(setup):
  policy, trajectory = setup
  config = GRPOConfig(group_size=6, expert_rows=2, mixture_correction=False)
  assert config.mixture_weights is None
  expert = jnp.array([False, True, False, True])
  params = PolicyParams()
  np.testing.assert_array_equal(
      trajectory_log_probs(policy, params, trajectory, None, expert, config.mixture_weights),
      trajectory_log_probs(policy, params, trajectory, None))


def test_mixture_damps_the_expert_rows_gradient(setup):
  """The expert rows' share of the policy gradient shrinks under the mixture: d log(w pi + c)
  = w pi / (w pi + c) d log pi."""
  policy, trajectory = setup
  params = PolicyParams()
  expert = jnp.array([False, True, False, True])
  advantages = jnp.array([0.0, 1.0, 0.0, 1.0])  # only the expert rows carry signal
  from flax import nnx
  graphdef, weights = nnx.split(policy)

  def grad_norm(config):
    old = trajectory_log_probs(policy, params, trajectory, None, expert, config.mixture_weights)

    def loss(w):
      return grpo_loss(nnx.merge(graphdef, w), params, config, trajectory, None, advantages,
                       jax.lax.stop_gradient(old), expert)[0]
    grads = jax.grad(loss)(weights)
    return float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads))))

  corrected = grad_norm(GRPOConfig(group_size=6, expert_rows=2))
  uncorrected = grad_norm(GRPOConfig(group_size=6, expert_rows=2, mixture_correction=False))
  assert 0 < corrected < uncorrected


@pytest.mark.parametrize("changes, message", [
    ({"expert_rows": -1}, "expert_rows must be an int >= 0"),
    ({"expert_rows": 1, "expert_steering": True}, "exclude each other")])
def test_bad_expert_settings_raise(changes, message):
  with pytest.raises(ValueError, match=message):
    GRPOConfig(**changes)
