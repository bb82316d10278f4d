"""`policy_lookum`: the learned policy proposes K sets, LookUM's verifier picks one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import policy_rl  # noqa: F401  (registers the strategies)
from lookum_jax.model import tiny
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.testing.models import random_model
from policy_rl import PolicyConfig, PolicyLookUMParams, init_policy

GEN, BLOCK = 8, 4
PROMPTS = jnp.array([[3, 4, 5, 6], [7, 8, 9, 10]], jnp.int32)


@pytest.fixture(scope="module")
def dllm():
  return random_model(tiny(vocab_size=32, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                           mlp_hidden_size=64))


@pytest.fixture(scope="module")
def policy():
  """A small policy with every parameter redrawn, so its probabilities vary by position."""
  policy = init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16),
                       seed=0)
  graphdef, state = nnx.split(policy)
  leaves, treedef = jax.tree.flatten(state)
  rng = np.random.default_rng(1)
  leaves = [jnp.asarray(0.5 * rng.standard_normal(x.shape), jnp.float32) for x in leaves]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


def config(block=BLOCK, **params) -> SamplerConfig:
  return SamplerConfig(gen_length=GEN, block_length=block, steps=GEN,
                       strategy="policy_lookum", params=params)


def test_one_path_is_the_deterministic_policy(dllm, policy):
  key = jax.random.key(0)
  expected = generate(dllm, PROMPTS, config().replace(
      strategy="policy", params={"mode": "deterministic"}), key, aux=policy)
  got = generate(dllm, PROMPTS, config(paths=1), key, aux=policy)
  np.testing.assert_array_equal(got.tokens, expected.tokens)
  np.testing.assert_array_equal(got.unmask_order, expected.unmask_order)
  np.testing.assert_array_equal(got.nfe, expected.nfe)


@pytest.mark.parametrize("paths,block", [(2, BLOCK), (3, GEN)])
def test_decodes_everything_in_block_order_and_counts_forwards(dllm, policy, paths, block):
  result = generate(dllm, PROMPTS, config(block=block, paths=paths, beta=2.0),
                    jax.random.key(3), aux=policy)
  p = PROMPTS.shape[1]
  np.testing.assert_array_equal(result.tokens[:, :p], PROMPTS)
  order = np.asarray(result.unmask_order)[:, p:]
  assert (order >= 0).all()  # every response position committed
  for row in order:  # blocks are decoded left to right
    for b in range(GEN // block - 1):
      assert row[b * block:(b + 1) * block].max() < row[(b + 1) * block:].min()
  steps = np.asarray(result.num_steps)
  # Each step costs 1 (no choice) or K forwards, after the first canvas's; the last
  # step's forward is spent only when it branched (its look-ahead is the verification).
  nfe = np.asarray(result.nfe)
  assert ((nfe >= steps) & (nfe <= 1 + paths * steps)).all()
  assert (nfe > steps + 1).any()  # some step branched


@pytest.mark.parametrize("paths", [2, 3])
def test_branching_steps_spend_k_forwards(dllm, policy, paths):
  """A policy that never unmasks (p ~ 0): every candidate falls back to the most confident
  position, so decoding is low_confidence at one token per step, and every step with two or
  more eligible positions branches and spends K forwards."""
  silent = nnx.clone(policy)
  silent.head.bias[...] = jnp.full_like(silent.head.bias[...], -1e4)
  silent.head.kernel[...] = jnp.zeros_like(silent.head.kernel[...])
  key = jax.random.key(0)
  got = generate(dllm, PROMPTS, config(paths=paths), key, aux=silent)
  expected = generate(dllm, PROMPTS, config().replace(strategy="low_confidence", params={}),
                      key)
  np.testing.assert_array_equal(got.tokens, expected.tokens)
  np.testing.assert_array_equal(got.unmask_order, expected.unmask_order)
  # Per block of 4: three branching steps (4, 3, 2 eligible) and one plain step; the first
  # canvas costs 1 and the very last step spends no forward.
  branching, plain = 2 * (BLOCK - 1), 2 - 1
  np.testing.assert_array_equal(got.nfe, [1 + paths * branching + plain] * 2)


def test_same_key_same_tokens_and_keys_matter(dllm, policy):
  cfg = config(paths=3, beta=2.0, selection_temperature=10.0)
  first = generate(dllm, PROMPTS, cfg, jax.random.key(7), aux=policy)
  again = generate(dllm, PROMPTS, cfg, jax.random.key(7), aux=policy)
  np.testing.assert_array_equal(first.tokens, again.tokens)
  orders = {tuple(np.asarray(generate(dllm, PROMPTS, cfg, jax.random.key(k), aux=policy)
                             .unmask_order).ravel()) for k in range(4)}
  assert len(orders) > 1


@pytest.mark.parametrize("bad,message", [
    ({"paths": 0}, "paths must be >= 1"),
    ({"beta": 0.0}, "beta must be > 0"),
    ({"verifier": "nope"}, "verifier must be one of"),
    ({"verifier_scope": "nope"}, "verifier_scope must be one of"),
    ({"features": ("nope",)}, "subset of"),
])
def test_bad_options_are_named(bad, message):
  with pytest.raises(ValueError, match=message):
    PolicyLookUMParams(**bad)


def test_missing_policy_is_a_clear_error(dllm):
  with pytest.raises(ValueError, match="needs the learned policy"):
    generate(dllm, PROMPTS, config(paths=2), jax.random.key(0))
