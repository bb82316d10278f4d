"""The learned-policy strategy: features, the policy network, action log-probabilities, and the
`policy` strategy inside the sampling loop (generate, decode under vmap, jit structure)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import policy_rl
from lookum_jax.model import tiny
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, decode, generate
from lookum_jax.testing.models import decode_kwargs, random_model
from policy_rl import (
  PolicyConfig,
  PolicyInput,
  PolicyParams,
  SteeredPolicy,
  compute_features,
  init_policy,
)
from policy_rl.grpo import trajectory_log_probs
from policy_rl.strategy import action_log_prob, position_log_probs

GEN, BLOCK = 8, 4
SMALL_POLICY = PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16)
PROMPTS = jnp.array([[3, 4, 5, 6], [7, 8, 9, 10]], jnp.int32)


def policy_config(**params) -> SamplerConfig:
  return SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN,
                       strategy=parse_strategy("policy", {"record": True, **params}))


@pytest.fixture(scope="module")
def dllm():
  return random_model(tiny(vocab_size=32, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                           mlp_hidden_size=64))


def randomized(policy, seed: int, scale: float = 0.5):
  """The policy with every parameter redrawn (the zero-initialised adaLN made active)."""
  graphdef, state = nnx.split(policy)
  leaves, treedef = jax.tree.flatten(state)
  rng = np.random.default_rng(seed)
  leaves = [jnp.asarray(scale * rng.standard_normal(x.shape), jnp.float32) for x in leaves]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


@nnx.jit
def apply(policy, inputs, attention_mask=None):
  return policy(inputs, attention_mask)


def with_output_bias(policy, bias: float):
  policy = nnx.clone(policy)
  policy.head.bias[...] = jnp.full_like(policy.head.bias[...], bias)
  return policy


@pytest.fixture(scope="module")
def policy():
  return randomized(init_policy(SMALL_POLICY, seed=1), seed=2, scale=0.3)


# ---------------------------------------------------------------- features and configs


def test_features_on_hand_built_state():
  # Token 3 plays the mask token: the most likely at position 2, but never a candidate.
  probs = np.array([[[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.25, 0.25], [0.1, 0.3, 0.2, 0.4]]])
  logits = jnp.log(jnp.asarray(probs, jnp.float32) + 1e-30) + 5.0  # softmax is shift-invariant
  masked = jnp.array([[False, True, True]])
  features = jax.jit(compute_features, static_argnums=(0, 4, 5))
  inputs = features(("confidence", "margin", "entropy"), logits, masked, jnp.array([3]), 12, 3)
  np.testing.assert_allclose(inputs.token_features[0, :, 0], [0.7, 0.25, 0.3], rtol=1e-5)
  np.testing.assert_allclose(inputs.token_features[0, :, 1], [0.5, 0.0, 0.1], atol=1e-6)
  with np.errstate(divide="ignore", invalid="ignore"):
    entropy = -np.nansum(probs * np.log(probs), axis=-1)[0]
  np.testing.assert_allclose(inputs.token_features[0, :, 2], entropy, rtol=1e-5)
  np.testing.assert_array_equal(inputs.masked, masked)
  np.testing.assert_allclose(inputs.time, [0.25])
  unbanned = features(("margin", "confidence"), logits, masked, jnp.array([0]), 12, None)
  np.testing.assert_allclose(unbanned.token_features[0, 2], [0.1, 0.4], rtol=1e-5)
  np.testing.assert_allclose(unbanned.time, [0.0])


@pytest.mark.parametrize("features, message", [
    ((), "non-empty subset"), (("confidence", "logit"), "unknown: \\['logit'\\]"),
    (("margin", "margin"), "twice"), ("confidence", "sequence of feature names")])
def test_bad_feature_sets_raise(features, message):
  with pytest.raises(ValueError, match=message):
    PolicyConfig(features=features)
  with pytest.raises(ValueError, match=message):
    PolicyParams(features=features)


@pytest.mark.parametrize("changes, message", [
    ({"width": 30, "num_heads": 2}, "must be an even integer"),
    ({"num_heads": 0}, "num_heads must be a positive int"),
    ({"time_frequencies": 7}, "time_frequencies must be even"),
    ({"output_bias": float("nan")}, "output_bias must be finite")])
def test_bad_policy_config_raises(changes, message):
  with pytest.raises(ValueError, match=message):
    PolicyConfig(**changes)


@pytest.mark.parametrize("changes, message", [
    ({"mode": "greedy"}, "mode must be one of"), ({"beta": 0.0}, "beta must be > 0"),
    ({"temperature": -1.0}, "temperature must be > 0"),
    ({"expert_tau": 1.5}, "expert_tau must be in"), ({"record": 1}, "record must be a bool")])
def test_bad_strategy_params_raise(changes, message):
  with pytest.raises(ValueError, match=message):
    PolicyParams(**changes)
  # By name, through the parser (which checks a parameter's type before the value does).
  with pytest.raises(ValueError, match=f"{message}|takes record as bool"):
    SamplerConfig(gen_length=GEN, block_length=BLOCK, strategy=parse_strategy("policy", changes))


# ---------------------------------------------------------------- the policy network


def test_default_policy_size_and_initial_unmask_probability():
  default = nnx.eval_shape(lambda: init_policy())
  assert default.config == PolicyConfig(width=128, num_heads=2, mlp_dim=512, num_layers=1)
  assert 250_000 <= policy_rl.num_params(default) <= 400_000
  policy = init_policy(SMALL_POLICY)
  for block in policy.blocks:  # adaLN-Zero: every block starts as the identity
    assert not np.any(block.modulation.kernel[...]) and not np.any(block.modulation.bias[...])
  inputs = PolicyInput(
      token_features=jax.random.uniform(jax.random.key(0), (2, 7, 1)),
      masked=jnp.array([[True, False] * 3 + [True]] * 2), time=jnp.array([0.0, 0.5]))
  logits = apply(policy, inputs, jnp.ones((2, 7), bool))
  np.testing.assert_allclose(logits, -2.0)
  np.testing.assert_allclose(jax.nn.sigmoid(logits), 0.1192, atol=1e-4)


def test_policy_ignores_prompt_padding(policy):
  """Padding is no attention key and takes no RoPE position: a row padded on the left and the
  same row padded on the right give the same logits on the real positions."""
  key1, key2 = jax.random.split(jax.random.key(3))
  features = jax.random.uniform(key1, (5, 1))
  masked = jax.random.bernoulli(key2, 0.5, (5,))
  pad_features, pad_masked = jnp.full((2, 1), 0.9), jnp.ones((2,), bool)
  inputs = PolicyInput(
      token_features=jnp.stack([jnp.concatenate([pad_features, features]),
                                jnp.concatenate([features, pad_features])]),
      masked=jnp.stack([jnp.concatenate([pad_masked, masked]),
                        jnp.concatenate([masked, pad_masked])]),
      time=jnp.array([0.3, 0.3]))
  real = jnp.array([[False, False] + [True] * 5, [True] * 5 + [False, False]])
  logits = apply(policy, inputs, real)
  np.testing.assert_allclose(logits[0, 2:], logits[1, :5], atol=1e-5)
  assert np.ptp(np.asarray(logits[0, 2:])) > 1e-3  # the randomised policy uses its inputs
  unmasked = apply(policy, inputs, jnp.ones_like(real))
  assert np.max(np.abs(unmasked[0, 2:] - logits[0, 2:])) > 1e-4  # padding would matter


def test_policy_rejects_wrong_feature_width(policy):
  inputs = PolicyInput(jnp.zeros((1, 4, 2)), jnp.zeros((1, 4), bool), jnp.zeros((1,)))
  with pytest.raises(ValueError, match=r"token_features must be \[batch, length, 1\]"):
    policy(inputs)


def test_save_and_load_policy_roundtrip(policy, tmp_path):
  policy_rl.save_policy(policy, tmp_path / "p")
  loaded = policy_rl.load_policy(tmp_path / "p")
  assert loaded.config == policy.config
  chex.assert_trees_all_equal(nnx.state(policy), nnx.state(loaded))
  with pytest.raises(ValueError, match="is not a saved policy"):
    policy_rl.load_policy(tmp_path)


# ---------------------------------------------------------------- action log-probabilities


@pytest.mark.parametrize("mode, temperature, beta", [
    ("sample", 0.7, 1.0), ("scaled", 1.0, 3.0), ("deterministic", 1.3, 1.0),
    ("expert", 1.0, 1.0)])
def test_log_prob_matches_direct_bernoulli(mode, temperature, beta):
  rng = np.random.default_rng(0)
  logits = rng.normal(0.0, 2.0, (3, 10)).astype(np.float32)
  actions = rng.random((3, 10)) < 0.5
  eligible = rng.random((3, 10)) < 0.7
  params = PolicyParams(mode=mode, temperature=temperature, beta=beta)
  p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64) / temperature))
  if mode == "scaled":
    p = np.minimum(1.0, beta * p)
    actions |= p >= 1.0  # a saturated position is always drawn
  with np.errstate(divide="ignore"):
    direct = np.where(actions, np.log(p), np.log1p(-p))
  direct = np.where(eligible, direct, 0.0)
  got = position_log_probs(params, jnp.asarray(logits), jnp.asarray(actions),
                           jnp.asarray(eligible))
  np.testing.assert_allclose(got, direct, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(action_log_prob(params, jnp.asarray(logits), jnp.asarray(actions),
                                             jnp.asarray(eligible)),
                             direct.sum(-1), rtol=1e-5, atol=1e-5)
  grads = jax.grad(lambda z: action_log_prob(params, z, jnp.asarray(actions),
                                             jnp.asarray(eligible)).sum())(jnp.asarray(logits))
  assert np.all(np.isfinite(grads))


# ---------------------------------------------------------------- the strategy in the loop


SAMPLE_KEY = 2  # a key whose rollout exercises both the drawn actions and the fallback


@pytest.fixture(scope="module")
def sampled(dllm, policy):
  return generate(dllm, PROMPTS, policy_config().with_policy(policy), jax.random.key(SAMPLE_KEY))


def test_generate_with_policy_records_a_consistent_trajectory(dllm, policy, sampled):
  result, batch = sampled, PROMPTS.shape[0]
  state = result.strategy_state
  traj = state.trajectory
  steps = np.asarray(result.num_steps)
  assert np.all(result.tokens[:, 4:] != dllm.config.mask_token_id)
  np.testing.assert_array_equal(result.nfe, result.num_steps)
  assert np.all((steps >= GEN // BLOCK) & (steps <= GEN))
  np.testing.assert_array_equal(traj.valid.sum(1), steps)
  for row in range(batch):
    valid = np.asarray(traj.valid[row])
    assert valid[:steps[row]].all() and not valid[steps[row]:].any()
    np.testing.assert_allclose(traj.time[row, :steps[row]], np.arange(steps[row]) / GEN)
  # The trajectory covers the loop's window: the response (no prompt positions).
  chex.assert_shape(traj.token_features, (batch, GEN, GEN, 1))  # [B, max_steps, W, F]
  chex.assert_shape([traj.actions, traj.eligible, traj.masked], (batch, GEN, GEN))
  # Step 0 features are the dLLM's top-1 probabilities on the all-masked canvas's response.
  canvas = jnp.concatenate([PROMPTS, jnp.full((batch, GEN), dllm.config.mask_token_id)], 1)
  logits = np.asarray(apply(dllm, canvas), np.float64)[:, PROMPTS.shape[1]:]
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  probs[..., dllm.config.mask_token_id] = 0.0  # never a candidate
  np.testing.assert_allclose(traj.token_features[:, 0, :, 0], probs.max(-1), rtol=1e-4)
  # Committed at step s: the drawn actions, or the single most confident eligible position.
  order, host = np.asarray(result.unmask_order)[:, PROMPTS.shape[1]:], jax.device_get(traj)
  fallbacks = 0
  for row in range(batch):
    for s in range(steps[row]):
      committed = order[row] == s
      actions, eligible = host.actions[row, s], host.eligible[row, s]
      assert not np.any(actions & ~eligible)
      if actions.any():
        np.testing.assert_array_equal(committed, actions)
      else:
        fallbacks += 1
        conf = np.where(eligible, host.token_features[row, s, :, 0], -1.0)
        np.testing.assert_array_equal(np.flatnonzero(committed), [np.argmax(conf)])
  assert 0 < fallbacks < steps.sum()  # both branches of the rule were exercised
  # The carried log-probability equals its recomputation from the trajectory (GRPO's view).
  params = PolicyParams(record=True)
  recomputed = trajectory_log_probs(policy, params, traj, None).sum((1, 2))
  np.testing.assert_allclose(state.log_prob, recomputed, rtol=1e-5)
  assert np.all(np.asarray(state.log_prob) < 0)


def test_at_least_one_rule_commits_the_most_confident(dllm, policy):
  """A policy that never draws commits exactly the most confident position each step:
  low_confidence at one token per step; one that always draws finishes a block per step."""
  never = generate(dllm, PROMPTS, policy_config().with_policy(with_output_bias(policy, -60.0)),
                   jax.random.key(0))
  one_per_step = generate(dllm, PROMPTS, SamplerConfig(
      gen_length=GEN, block_length=BLOCK, steps=GEN, strategy=parse_strategy("low_confidence")),
      jax.random.key(0))
  np.testing.assert_array_equal(never.num_steps, GEN)
  np.testing.assert_array_equal(never.tokens, one_per_step.tokens)
  np.testing.assert_array_equal(never.unmask_order, one_per_step.unmask_order)
  assert not np.any(never.strategy_state.trajectory.actions)
  np.testing.assert_allclose(never.strategy_state.log_prob, 0.0, atol=1e-6)
  always = generate(dllm, PROMPTS, policy_config().with_policy(with_output_bias(policy, 60.0)),
                    jax.random.key(0))
  np.testing.assert_array_equal(always.num_steps, GEN // BLOCK)
  np.testing.assert_array_equal(always.unmask_order[:, 4:],
                                np.repeat(np.arange(GEN // BLOCK), BLOCK)[None].repeat(2, 0))


def test_expert_rows_follow_the_threshold_rule(dllm, policy, sampled):
  steered = generate(dllm, PROMPTS, policy_config().with_policy(
      SteeredPolicy(policy, jnp.array([True, False]))), jax.random.key(SAMPLE_KEY))
  threshold = generate(dllm, PROMPTS, SamplerConfig(
      gen_length=GEN, block_length=BLOCK, strategy=parse_strategy("threshold", {"tau": 0.9})),
      jax.random.key(0))
  np.testing.assert_array_equal(steered.tokens[0], threshold.tokens[0])
  np.testing.assert_array_equal(steered.unmask_order[0], threshold.unmask_order[0])
  np.testing.assert_array_equal(steered.num_steps[0], threshold.num_steps[0])
  # The other row is the policy's own rollout (rows have their own keys).
  np.testing.assert_array_equal(steered.tokens[1], sampled.tokens[1])
  np.testing.assert_array_equal(steered.unmask_order[1], sampled.unmask_order[1])
  # The expert's actions are recorded and scored under the policy like any other.
  traj = steered.strategy_state.trajectory
  recomputed = trajectory_log_probs(policy, PolicyParams(record=True), traj, None).sum((1, 2))
  np.testing.assert_allclose(steered.strategy_state.log_prob, recomputed, rtol=1e-5)


def test_deterministic_mode_commits_where_p_is_at_least_one_half(dllm, policy):
  config = policy_config(mode="deterministic")
  first = generate(dllm, PROMPTS, config.with_policy(policy), jax.random.key(0))
  second = generate(dllm, PROMPTS, config.with_policy(policy), jax.random.key(1))
  np.testing.assert_array_equal(first.unmask_order, second.unmask_order)
  traj = first.strategy_state.trajectory
  b, s, t = traj.actions.shape
  logits = apply(policy, traj.step_inputs()).reshape(b, s, t)
  expected = (logits >= 0.0) & traj.eligible & traj.valid[..., None]
  np.testing.assert_array_equal(traj.actions, expected)


def test_policy_under_vmap_over_rollouts(dllm, policy):
  """Rollouts as a vmapped axis of `decode` equal separate `generate` calls, one per key."""
  config = policy_config()
  keys = jax.random.split(jax.random.key(5), 3)
  vmapped = jax.jit(jax.vmap(lambda k: decode(
      lambda t, m: dllm(t, m), PROMPTS, None, k, config.with_policy(policy),
      **decode_kwargs(dllm, config))))(keys)
  for i, key in enumerate(keys):
    single = generate(dllm, PROMPTS, config.with_policy(policy), key)
    np.testing.assert_array_equal(vmapped.tokens[i], single.tokens)
    np.testing.assert_array_equal(vmapped.unmask_order[i], single.unmask_order)
    np.testing.assert_allclose(vmapped.strategy_state.log_prob[i],
                               single.strategy_state.log_prob, rtol=1e-5)
  assert len({tuple(np.asarray(t).ravel()) for t in vmapped.unmask_order}) > 1  # keys matter


def test_decode_loop_has_no_python_loop_over_steps(dllm, policy):
  """The traced program is one loop over blocks holding one while loop over a block's steps,
  and neither grows with the step count or the number of blocks."""
  def jaxpr(gen_length, block_length):
    config = SamplerConfig(gen_length=gen_length, block_length=block_length,
                           strategy=parse_strategy("policy", {"record": True}))
    fn = lambda p, k: decode(lambda t, m: dllm(t, m), p, None, k, config.with_policy(policy),
                             **decode_kwargs(dllm, config))
    return jax.make_jaxpr(fn)(PROMPTS, jax.random.key(0)).jaxpr

  loop_names = ("while", "scan")

  def only_loop(j):
    loops = [e for e in j.eqns if e.primitive.name in loop_names]
    assert len(loops) == 1, [e.primitive.name for e in loops]
    return loops[0]

  def body(eqn):
    return (eqn.params["jaxpr"] if eqn.primitive.name == "scan"
            else eqn.params["body_jaxpr"]).jaxpr

  def structure(j):
    blocks = only_loop(j)  # the loop over blocks
    steps = only_loop(body(blocks))  # the while loop over a block's steps
    assert steps.primitive.name == "while"
    return len(j.eqns), len(body(blocks).eqns), len(body(steps).eqns)

  # Full diffusion at two lengths, and two numbers of blocks of the same length.
  assert structure(jaxpr(8, 8)) == structure(jaxpr(32, 32))
  assert structure(jaxpr(8, 4)) == structure(jaxpr(32, 4))


def test_strategy_errors_are_precise(dllm, policy):
  with pytest.raises(ValueError, match=r"needs the learned policy: build the value with it"):
    generate(dllm, PROMPTS, policy_config(), jax.random.key(0))
  with pytest.raises(ValueError, match="built for features \\('confidence',\\)"):
    generate(dllm, PROMPTS, policy_config(features=("margin",)).with_policy(policy),
             jax.random.key(0))
  with pytest.raises(ValueError, match=r"expert_rows must have shape \(2,\)"):
    generate(dllm, PROMPTS, policy_config().with_policy(
        SteeredPolicy(policy, jnp.array([True, False, True]))), jax.random.key(0))
