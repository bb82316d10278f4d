"""`policy_lookum`: the learned policy proposes K sets, LookUM's verifier picks one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lookum_jax.model import tiny
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, decode, generate
from lookum_jax.testing.models import decode_kwargs, random_model
from policy_rl import PolicyConfig, PolicyLookUM, SteeredPolicy, init_policy

GEN, BLOCK = 8, 4
PROMPTS = jnp.array([[3, 4, 5, 6], [7, 8, 9, 10]], jnp.int32)


@pytest.fixture(scope="module")
def dllm():
  return random_model(tiny(vocab_size=32, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1,
                           mlp_hidden_size=64))


def _policy(output_bias: float, seed: int = 1):
  """A small policy with every parameter redrawn, so its probabilities vary by position."""
  policy = init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16),
                       seed=0)
  graphdef, state = nnx.split(policy)
  leaves, treedef = jax.tree.flatten(state)
  rng = np.random.default_rng(seed)
  leaves = [jnp.asarray(0.5 * rng.standard_normal(x.shape), jnp.float32) for x in leaves]
  policy = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
  policy.head.bias[...] = jnp.full_like(policy.head.bias[...], output_bias)
  return policy


@pytest.fixture(scope="module")
def policy():
  return _policy(output_bias=-1.0, seed=2)


def config(block=BLOCK, **params) -> SamplerConfig:
  return SamplerConfig(gen_length=GEN, block_length=block, steps=GEN,
                       strategy=parse_strategy("policy_lookum", params))


def test_one_path_is_the_deterministic_policy(dllm, policy):
  key = jax.random.key(0)
  expected = generate(dllm, PROMPTS, config().replace(
      strategy=parse_strategy("policy", {"mode": "deterministic"})).with_policy(policy), key)
  got = generate(dllm, PROMPTS, config(paths=1).with_policy(policy), key)
  np.testing.assert_array_equal(got.tokens, expected.tokens)
  np.testing.assert_array_equal(got.unmask_order, expected.unmask_order)
  np.testing.assert_array_equal(got.nfe, expected.nfe)
  # The policy decides: some step commits several positions (not one per step).
  assert (np.asarray(got.num_steps) < GEN).all()


@pytest.mark.parametrize("paths,block", [(2, BLOCK), (3, GEN)])
def test_decodes_everything_in_block_order_and_counts_forwards(dllm, policy, paths, block):
  result = generate(dllm, PROMPTS, config(block=block, paths=paths, beta=2.0).with_policy(policy),
                    jax.random.key(3))
  p = PROMPTS.shape[1]
  np.testing.assert_array_equal(result.tokens[:, :p], PROMPTS)
  order = np.asarray(result.unmask_order)[:, p:]
  assert (order >= 0).all()  # every response position committed
  for row in order:  # blocks are decoded left to right
    for b in range(GEN // block - 1):
      assert row[b * block:(b + 1) * block].max() < row[(b + 1) * block:].min()
  steps = np.asarray(result.num_steps)
  # Each step costs 1 (no choice) or K forwards, after its block's opening forward; a
  # block's last step spends a forward only when it branched (its look-ahead is the
  # verification).
  nfe = np.asarray(result.nfe)
  blocks = GEN // block
  assert ((nfe >= steps) & (nfe <= blocks + paths * steps)).all()
  assert (nfe > steps + 1).any()  # some step branched (no branching: nfe == steps)


@pytest.mark.parametrize("paths", [2, 3])
def test_branching_steps_spend_k_forwards(dllm, policy, paths):
  """A policy that never unmasks (p ~ 0): every candidate falls back to the most confident
  position, so decoding is low_confidence at one token per step, and every step with two or
  more eligible positions branches and spends K forwards."""
  silent = nnx.clone(policy)
  silent.head.bias[...] = jnp.full_like(silent.head.bias[...], -1e4)
  silent.head.kernel[...] = jnp.zeros_like(silent.head.kernel[...])
  key = jax.random.key(0)
  got = generate(dllm, PROMPTS, config(paths=paths, dedupe=False).with_policy(silent), key)
  expected = generate(dllm, PROMPTS, config().replace(
                                                      strategy=parse_strategy("low_confidence", {
                                                          })),
                      key)
  # With dedupe (the default) the K identical candidates cost one forward: low_confidence's.
  deduped = generate(dllm, PROMPTS, config(paths=paths).with_policy(silent), key)
  np.testing.assert_array_equal(deduped.tokens, expected.tokens)
  np.testing.assert_array_equal(deduped.nfe, expected.nfe)
  np.testing.assert_array_equal(got.tokens, expected.tokens)
  np.testing.assert_array_equal(got.unmask_order, expected.unmask_order)
  # Per block of 4: the opening forward, three branching steps (4, 3, 2 eligible; the last
  # one's look-ahead serves the fourth step) and one plain step, which spends no forward
  # (its block is then committed).
  blocks, branching = GEN // BLOCK, GEN // BLOCK * (BLOCK - 1)
  np.testing.assert_array_equal(got.nfe, [blocks + paths * branching] * 2)


def test_same_key_same_tokens_and_keys_matter(dllm, policy):
  cfg = config(paths=3, beta=2.0, selection_temperature=10.0)
  first = generate(dllm, PROMPTS, cfg.with_policy(policy), jax.random.key(7))
  again = generate(dllm, PROMPTS, cfg.with_policy(policy), jax.random.key(7))
  np.testing.assert_array_equal(first.tokens, again.tokens)
  orders = {tuple(np.asarray(generate(dllm, PROMPTS, cfg.with_policy(policy), jax.random.key(k))
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
    PolicyLookUM.from_params(bad)


def test_missing_or_steered_policy_is_a_clear_error(dllm, policy):
  with pytest.raises(ValueError, match="'policy_lookum' needs the learned policy"):
    generate(dllm, PROMPTS, config(paths=2), jax.random.key(0))
  steered = SteeredPolicy(policy, jnp.ones((2,), bool))
  with pytest.raises(ValueError, match="does not follow an expert"):
    generate(dllm, PROMPTS, config(paths=2).with_policy(steered), jax.random.key(0))


def test_a_row_decodes_the_same_alone_and_in_a_padded_batch(dllm):
  """Per-row keys and response-only draws: a row's tokens and its NFE (a row without a
  choice is charged one forward even when its batch branches) do not depend on its batch."""
  policy = _policy(output_bias=-2.0, seed=2)
  cfg = config(block=GEN, paths=3, beta=2.0, selection_temperature=1.0)
  short = jnp.asarray([[21, 22, 23]], jnp.int32)
  longer = jnp.asarray([[10, 11, 12, 13, 14, 15]], jnp.int32)
  padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), short], axis=1)
  batch = jnp.concatenate([padded, longer], axis=0)
  mask = jnp.asarray([[False] * 3 + [True] * 3, [True] * 6])
  keys = jax.random.split(jax.random.key(5), 2)
  alone = generate(dllm, short, cfg.with_policy(policy), keys[:1])
  together = generate(dllm, batch, cfg.with_policy(policy), keys, mask)
  np.testing.assert_array_equal(alone.tokens[0, 3:], together.tokens[0, 6:])
  np.testing.assert_array_equal(alone.nfe[0], together.nfe[0])
  assert together.num_steps[0] != together.num_steps[1]  # the rows branch at different steps


def _sharp_once_committed(favoured: int, total: int, vocab: int = 32):
  """Logits with a fixed confidence ranking; sharp everywhere once `favoured` holds a
  token, flat otherwise: a certainty verifier should keep a candidate committing it."""
  ramp = jnp.linspace(3.0, 0.0, total)  # earlier positions more confident

  def model_fn(tokens, attention_mask=None):
    del attention_mask
    base = jnp.zeros(tokens.shape + (vocab,)).at[..., 7].set(ramp)
    sharp = (tokens[:, favoured] != 31)[:, None, None]
    return jnp.where(sharp, base.at[..., 9].add(20.0), base)

  return model_fn


def test_verifier_keeps_the_candidate_it_is_most_certain_after():
  """A policy with p ~ 0.45 everywhere: its deterministic set is the single most confident
  position, its draws are random sets; the verifier must keep a draw holding `favoured`."""
  prompt = jnp.full((1, 4), 5, jnp.int32)
  favoured = 4 + GEN - 1  # the least confident response position
  policy = _policy(output_bias=-0.2)
  policy.head.kernel[...] = jnp.zeros_like(policy.head.kernel[...])
  cfg = config(block=GEN, paths=8, verifier_scope="response")
  result = jax.jit(lambda k: decode(
      _sharp_once_committed(favoured, 4 + GEN), prompt, None, k, cfg.with_policy(policy),
      mask_token_id=31, eos_token_id=30, stop_token_ids=(30,)))(jax.random.key(0))
  order = np.asarray(result.unmask_order[0])
  assert order[favoured] == 0  # committed at the first step, though the least confident
  alone = config(block=GEN, paths=1)  # the deterministic policy commits it last
  result = jax.jit(lambda k: decode(
      _sharp_once_committed(favoured, 4 + GEN), prompt, None, k, alone.with_policy(policy),
      mask_token_id=31, eos_token_id=30, stop_token_ids=(30,)))(jax.random.key(0))
  assert np.asarray(result.unmask_order[0])[favoured] > 0


def test_rollouts_under_vmap_equal_separate_calls(dllm, policy):
  cfg = config(paths=2, beta=2.0, selection_temperature=1.0)
  keys = jax.random.split(jax.random.key(9), 3)
  vmapped = jax.jit(jax.vmap(lambda k: decode(
      dllm, PROMPTS, None, jnp.broadcast_to(k, (2,)), cfg.with_policy(policy),
      **decode_kwargs(dllm, cfg))))(keys)
  for i, key in enumerate(keys):
    single = generate(dllm, PROMPTS, cfg.with_policy(policy), jnp.broadcast_to(key, (2,)))
    np.testing.assert_array_equal(vmapped.tokens[i], single.tokens)
    np.testing.assert_array_equal(vmapped.nfe[i], single.nfe)
