"""KLASS (`strategies.klass`): the jitted loop against a plain numpy KLASS driving the model
step by step (`testing.numpy_loop`), under every cache mode, with a padded batch against
rows run alone; batch invariance as a property; traced thresholds; its carried memory;
bad parameters; the CLI name."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookum_jax.parsing import parse_sampler, parse_strategy
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.sampling.loop import _generate_jit, init_decode
from lookum_jax.sampling.strategies.klass import KLASS, carried_bytes
from lookum_jax.testing import (
    MODEL_CONFIG,
    decode_kwargs,
    gumbel_uniforms,
    make_prompts,
    random_model,
)
from lookum_jax.testing.numpy_loop import StepInput, reference_decode, top_confident

GEN, BLOCK = 16, 8
PAD = MODEL_CONFIG.pad_token_id


@functools.cache
def model():
  return random_model(MODEL_CONFIG)


def klass_rule(conf_threshold: float, kl_threshold: float, history: int, unmask: str):
  """KLASS in numpy: ready = confident and `history` consecutive KLs below the threshold."""

  def rule(s: StepInput) -> np.ndarray:
    previous = s.memory.get("log_probs")
    if previous is None:
      stable_steps = np.zeros(s.masked.shape, int)
      kl = np.full(s.masked.shape, np.inf)
    else:
      p = np.exp(s.log_probs)
      kl = np.sum(np.where(p > 0, p * (s.log_probs - previous), 0.0), axis=-1)
      stable_steps = np.where(kl < kl_threshold, s.memory["stable_steps"] + 1, 0)
    s.memory.update(log_probs=s.log_probs, stable_steps=stable_steps)
    ready = s.masked & (stable_steps >= history) & (s.confidence > conf_threshold)
    if not ready.any():
      return top_confident(s.confidence, s.masked, 1)
    if unmask == "max_conf":
      return np.arange(len(ready)) == np.argmax(np.where(ready, s.confidence, -np.inf))
    if unmask == "min_kl":
      return np.arange(len(ready)) == np.argmin(np.where(ready, kl, np.inf))
    return ready

  return rule


def padded_batch() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
  """Two 3-token prompts left-padded to 5 (the reference runs them alone, unpadded: one
  shape for its forwards)."""
  rows = list(make_prompts(40, batch=2, length=3))
  ids = np.stack([np.concatenate([[PAD, PAD], row]) for row in rows]).astype(np.int32)
  return ids, np.stack([np.arange(5) >= 2] * 2), rows


def keys(seed: int) -> jax.Array:
  """One key per row (the property test below swaps rows with their keys)."""
  return jax.numpy.stack([jax.random.key(seed), jax.random.key(seed + 1)])


# (cache, temperature, KLASS) : each cache mode once, the static knobs varied across them.
CASES = [
    ("none", 0.0, KLASS(conf_threshold=0.3, kl_threshold=0.2, history=1)),
    ("prefix", 0.5, KLASS(conf_threshold=0.3, kl_threshold=1.0, history=2)),
    ("dual", 0.0, KLASS(conf_threshold=0.2, kl_threshold=0.5, history=1, unmask="min_kl")),
]


@pytest.mark.parametrize("cache, temperature, strategy", CASES, ids=[c[0] for c in CASES])
def test_matches_numpy_reference(cache, temperature, strategy):
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, strategy=strategy, cache=cache,
                         temperature=temperature)
  ids, mask, rows = padded_batch()
  key = keys(3)
  result = jax.tree.map(np.asarray, generate(model(), ids, config, key, mask))
  uniforms = (gumbel_uniforms(key, 2, GEN, GEN, MODEL_CONFIG.vocab_size)
              if temperature > 0 else None)
  rule = klass_rule(strategy.conf_threshold, strategy.kl_threshold, strategy.history,
                    strategy.unmask)
  for i, row in enumerate(rows):
    tokens, nfe, steps = reference_decode(
        model(), row, rule, gen_length=GEN, block_length=BLOCK, cache=cache,
        mask_token_id=MODEL_CONFIG.mask_token_id, temperature=temperature,
        uniforms=None if uniforms is None else uniforms[:, i])
    np.testing.assert_array_equal(result.tokens[i, 5:], tokens[len(row):], err_msg=f"row {i}")
    assert (int(result.nfe[i]), int(result.num_steps[i])) == (nfe, steps)
  if strategy.unmask == "all":  # the rule did commit in parallel here
    assert np.any(result.num_steps < GEN)


@settings(max_examples=5, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16))
def test_row_ignores_its_batch(seed):
  """A row decodes the same first or second, next to any other row (cache none's program
  of the reference test: same shapes)."""
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, strategy=CASES[0][2])
  ids, mask, _ = padded_batch()
  other = make_prompts(seed, batch=1)[0]
  key, other_key = keys(seed)
  a = generate(model(), ids, config, keys(seed), mask)
  b = generate(model(), np.stack([other, ids[0]]), config, jax.numpy.stack([other_key, key]),
               np.stack([np.ones(5, bool), mask[0]]))
  np.testing.assert_array_equal(np.asarray(a.tokens[0]), np.asarray(b.tokens[1]))
  assert int(a.nfe[0]) == int(b.nfe[1])


def test_thresholds_are_traced():
  """A sweep over both thresholds compiles one program, and the numbers reach it."""
  ids, mask, _ = padded_batch()
  before = _generate_jit._cache_size()
  steps = []
  for conf, kl in ((1.0, 0.0), (0.3, 0.2), (0.0, 1e9)):
    config = SamplerConfig(gen_length=GEN, block_length=BLOCK,
                           strategy=KLASS(conf_threshold=conf, kl_threshold=kl, history=1))
    steps.append(np.asarray(generate(model(), ids, config, keys(3), mask).num_steps))
  assert _generate_jit._cache_size() - before <= 1  # 0 when the reference test ran first
  assert np.all(steps[0] == GEN)  # nothing is ever ready: one token a step
  assert np.all(steps[2] == 2 * 2)  # history 1: block start + one step commits the rest
  assert np.all(steps[2] <= steps[1]) and np.all(steps[1] <= steps[0])


def test_carries_the_block_distribution_only():
  """The carried state is `[B, block, V]` float32 plus `[B, block]` int32 whatever the
  window (cache none's window is the whole response)."""
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, strategy=KLASS())
  ids, mask, _ = padded_batch()
  state = jax.eval_shape(lambda: init_decode(
      model(), ids, mask, jax.random.key(0), config, **decode_kwargs(model(), config))[1])
  carried = state.strategy_state
  assert carried.log_probs.shape == (2, BLOCK, MODEL_CONFIG.vocab_size)
  assert carried.stable_steps.shape == (2, BLOCK)
  size = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(carried))
  assert size == carried_bytes(2, BLOCK, MODEL_CONFIG.vocab_size)
  # LLaDA-8B, B 8, block 32: 123.5 MiB of log-probabilities and 1 KiB of counts.
  assert carried_bytes(8, 32, 126464) == 8 * 32 * 126464 * 4 + 8 * 32 * 4 == 129_500_160


@pytest.mark.parametrize("params, message", [
    ({"conf_threshold": 1.5}, r"klass conf_threshold must be in \[0, 1\], got 1.5"),
    ({"kl_threshold": -0.1}, r"klass kl_threshold must be >= 0"),
    ({"history": 0}, r"klass history must be an int >= 1"),
    ({"unmask": "best"}, r"klass unmask must be one of \('all', 'max_conf', 'min_kl'\)"),
])
def test_rejects_bad_parameters(params, message):
  with pytest.raises(ValueError, match=message):
    KLASS(**params)


def test_command_line_name_and_params():
  assert parse_strategy("klass", {"kl_threshold": "0.02", "history": "3"}) == KLASS(
      kl_threshold=0.02, history=3)
  config = parse_sampler({"strategy": "klass", "params": {"conf_threshold": "0.6"}})
  assert config.strategy == KLASS(conf_threshold=0.6) and not config.strategy.uses_schedule
  assert parse_sampler({"params": {"unmask": "max_conf"}}, base=config).strategy == KLASS(
      conf_threshold=0.6, unmask="max_conf")
  with pytest.raises(ValueError, match="unknown parameter"):
    parse_strategy("klass", {"tau": 0.9})
