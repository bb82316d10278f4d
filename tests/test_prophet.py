"""Prophet (`strategies.prophet`): the jitted loop against a plain numpy Prophet driving the
model step by step (`testing.numpy_loop`), under every cache mode, with a padded batch
against rows run alone; batch invariance as a property; traced thresholds; the gap's units;
bad parameters; the CLI name and JSON form."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookum_jax.parsing import parse_sampler, parse_strategy
from lookum_jax.sampling import (
    LookUM,
    LowConfidence,
    SamplerConfig,
    StepView,
    Threshold,
    generate,
)
from lookum_jax.sampling.loop import _generate_jit
from lookum_jax.sampling.strategies.prophet import Prophet, logit_gap
from lookum_jax.testing import MODEL_CONFIG, gumbel_uniforms, make_prompts, random_model
from lookum_jax.testing.numpy_loop import StepInput, reference_decode, top_confident

GEN, BLOCK = 16, 8
PAD = MODEL_CONFIG.pad_token_id


@functools.cache
def model():
  return random_model(MODEL_CONFIG)


def prophet_rule(strategy: Prophet, steps_per_block: int):
  """Prophet in numpy around LowConfidence (LLaDA's schedule) or Threshold."""
  base, block = strategy.base, BLOCK
  schedule = [block // steps_per_block + (i < block % steps_per_block)
              for i in range(steps_per_block)]

  def rule(s: StepInput) -> np.ndarray:
    real = s.logits.copy()
    real[:, MODEL_CONFIG.mask_token_id] = -np.inf
    top2 = -np.sort(-real, axis=-1)[:, :2]
    gap = (top2[:, 0] - top2[:, 1])[s.masked]
    combined = gap.min() if strategy.reduce == "min" else gap.mean()
    if s.progress < strategy.early_until:
      threshold = strategy.early
    elif s.progress < strategy.mid_until:
      threshold = strategy.mid
    else:
      threshold = strategy.late
    if combined >= threshold:
      return s.masked
    if isinstance(base, Threshold):
      above = s.masked & (s.confidence >= base.tau)
      return above if above.any() else top_confident(s.confidence, s.masked, 1)
    return top_confident(s.confidence, s.masked, schedule[s.step_in_block])

  return rule


def padded_batch() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
  """Two 3-token prompts left-padded to 5 (the reference runs them alone, unpadded)."""
  rows = list(make_prompts(50, batch=2, length=3))
  ids = np.stack([np.concatenate([[PAD, PAD], row]) for row in rows]).astype(np.int32)
  return ids, np.stack([np.arange(5) >= 2] * 2), rows


def keys(seed: int) -> jax.Array:
  return jnp.stack([jax.random.key(seed), jax.random.key(seed + 1)])


# (cache, temperature, steps, Prophet): each cache mode once, structures varied across them.
CASES = [
    ("none", 0.0, 16, Prophet(base=LowConfidence(), early=0.75, mid=0.5, late=0.25)),
    ("prefix", 0.5, 16, Prophet(base=Threshold(tau=0.5), early=1.5, mid=1.0, late=0.5,
                                reduce="mean")),
    ("dual", 0.0, 8, Prophet(base=LowConfidence(), early=0.75, mid=0.5, late=0.25,
                             early_until=0.2, mid_until=0.5)),
]


@pytest.mark.parametrize("cache, temperature, steps, strategy", CASES, ids=[c[0] for c in CASES])
def test_matches_numpy_reference(cache, temperature, steps, strategy):
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=steps, strategy=strategy,
                         cache=cache, temperature=temperature)
  ids, mask, rows = padded_batch()
  key = keys(3)
  result = jax.tree.map(np.asarray, generate(model(), ids, config, key, mask))
  uniforms = (gumbel_uniforms(key, 2, GEN, GEN, MODEL_CONFIG.vocab_size)
              if temperature > 0 else None)
  rule = prophet_rule(strategy, config.steps_per_block)
  for i, row in enumerate(rows):
    tokens, nfe, taken = reference_decode(
        model(), row, rule, gen_length=GEN, block_length=BLOCK, cache=cache,
        mask_token_id=MODEL_CONFIG.mask_token_id, temperature=temperature,
        uniforms=None if uniforms is None else uniforms[:, i])
    np.testing.assert_array_equal(result.tokens[i, 5:], tokens[len(row):], err_msg=f"row {i}")
    assert (int(result.nfe[i]), int(result.num_steps[i])) == (nfe, taken)
  # The early commit fired: fewer steps than the base alone would take (the scheduled base
  # takes exactly `steps`; the threshold base here at least 6, measured without Prophet).
  assert np.any(result.num_steps < (steps if strategy.uses_schedule else 6))


@settings(max_examples=5, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16))
def test_row_ignores_its_batch(seed):
  """A row decodes the same first or second, next to any other row (cache none's program
  of the reference test: same shapes)."""
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=16, strategy=CASES[0][3])
  ids, mask, _ = padded_batch()
  other = make_prompts(seed, batch=1)[0]
  key, other_key = keys(seed)
  a = generate(model(), ids, config, keys(seed), mask)
  b = generate(model(), np.stack([other, ids[0]]), config, jnp.stack([other_key, key]),
               np.stack([np.ones(5, bool), mask[0]]))
  np.testing.assert_array_equal(np.asarray(a.tokens[0]), np.asarray(b.tokens[1]))
  assert int(a.nfe[0]) == int(b.nfe[1])


def test_thresholds_are_traced():
  """A sweep over the thresholds and stage bounds compiles one program; the numbers reach
  it: an unreachable gap leaves the base's schedule, a zero gap commits each block at once."""
  ids, mask, _ = padded_batch()
  before = _generate_jit._cache_size()
  steps = []
  for gap, until in ((1e9, 0.33), (0.75, 0.2), (0.0, 0.9)):
    strategy = Prophet(base=LowConfidence(), early=gap, mid=gap / 2, late=gap / 3,
                       early_until=until, mid_until=0.95)
    config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=16, strategy=strategy)
    steps.append(np.asarray(generate(model(), ids, config, keys(3), mask).num_steps))
  assert _generate_jit._cache_size() - before <= 1  # 0 when the reference test ran first
  assert np.all(steps[0] == 16) and np.all(steps[2] == 2)
  assert not np.array_equal(steps[1], steps[0]) and not np.array_equal(steps[1], steps[2])


def test_gap_is_in_logits_without_the_mask_token():
  logits = np.array([[2.0, 0.5, -1.0, 9.0], [0.0, 0.0, -3.0, 9.0]], np.float32)
  unused = np.zeros(2)  # the gap reads the logits only
  view = StepView(logits=logits, candidates=unused, confidence=unused, certainty=unused,
                  entropy=unused, margin=unused, eligible=unused, masked=unused,
                  demoted=unused, num_transfer=unused, positions=unused, mask_token_id=3)
  np.testing.assert_allclose(np.asarray(jax.jit(logit_gap)(view)), [1.5, 0.0])


@pytest.mark.parametrize("params, message", [
    ({"late": -1.0}, r"prophet late must be >= 0 \(a top-1 minus top-2 logit gap\)"),
    ({"early_until": 1.5}, r"prophet early_until must be in \[0, 1\]"),
    ({"early_until": 0.8, "mid_until": 0.5}, r"early_until \(0.8\) must be <= mid_until"),
    ({"reduce": "max"}, r"prophet reduce must be one of \('min', 'mean'\)"),
    ({"base": LookUM()}, r"prophet base must be a per-sequence Rule value"),
])
def test_rejects_bad_parameters(params, message):
  with pytest.raises(ValueError, match=message):
    Prophet(**params)


def test_command_line_name_params_and_json_form():
  value = parse_strategy("prophet", {"base": "threshold", "base.tau": "0.8", "late": "2"})
  assert value == Prophet(base=Threshold(tau=0.8), late=2.0)
  assert value.label() == "prophet(base=threshold(tau=0.8), late=2.0)"
  assert Prophet.from_params(value.to_dict()) == value
  config = parse_sampler({"strategy": "prophet", "params": {"reduce": "mean"}})
  assert config.strategy == Prophet(reduce="mean") and config.strategy.uses_schedule
  changed = parse_sampler({"params": {"base.tau": "0.7", "base": "threshold"}}, base=config)
  assert changed.strategy == Prophet(base=Threshold(tau=0.7), reduce="mean")
  assert not changed.strategy.uses_schedule
  with pytest.raises(ValueError, match="unknown parameter"):
    parse_strategy("prophet", {"tau": 0.9})
