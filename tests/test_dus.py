"""DUS (the dilated unmasking schedule): its groups against the authors' rule written out as
plain Python, the jitted loop against an eager numpy sampler in every cache mode, a sweep
over its numbers compiling once, batch and padding invariance, and its checks."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy_sampler import decode_rows, padded

from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.sampling.loop import _generate_jit
from lookum_jax.sampling.strategies.dus import DUS, dilation_groups
from lookum_jax.testing import MODEL_CONFIG, make_prompts, random_model

GEN, BLOCK = 16, 8
# Jitted per block length (base and skip are traced), not run op by op.
groups_of = jax.jit(dilation_groups, static_argnums=0)


@functools.cache
def shared_model():
  return random_model(MODEL_CONFIG)


@pytest.fixture(scope="module")
def model():
  return shared_model()


def authors_levels(length: int, base: int, skip: int) -> list[list[int]]:
  """The groups of offsets `[0, length)`, coarse to fine, as the paper's code builds them:
  strides `length // base**skip`, then divided by `base` while >= 1, each round taking the
  multiples of its stride not taken yet; the leftovers last; a last group smaller than the
  one before merges into it."""
  levels, taken = [], set()
  stride = length // base ** skip
  while stride >= 1:
    level = [i for i in range(length) if i % stride == 0 and i not in taken]
    if level:
      levels.append(level)
      taken.update(level)
    stride //= base
  rest = [i for i in range(length) if i not in taken]
  if rest:
    levels.append(rest)
  if len(levels) >= 2 and len(levels[-1]) < len(levels[-2]):
    last = levels.pop()
    levels[-1] += last
  return levels


def as_groups(levels: list[list[int]], length: int) -> list[int]:
  group = [-1] * length
  for g, level in enumerate(levels):
    for i in level:
      group[i] = g
  return group


@pytest.mark.parametrize("length, base, skip", [
    (32, 2, 1), (27, 3, 1), (12, 2, 1), (5, 2, 1), (16, 5, 3)])
def test_groups_follow_the_authors_rule(length, base, skip):
  expected = as_groups(authors_levels(length, base, skip), length)
  assert groups_of(length, base, skip).tolist() == expected


def test_power_of_two_blocks_take_log2_steps_of_non_adjacent_positions():
  for exponent in (2, 3, 5):
    length = 2 ** exponent
    groups = np.asarray(groups_of(length, 2, 1))
    assert groups.max() + 1 == exponent
    for g in range(groups.max() + 1):
      members = np.flatnonzero(groups == g)
      assert len(members) == 1 or np.diff(members).min() >= 2
  assert groups_of(8, 2, 1).tolist() == [0, 2, 1, 2, 0, 2, 1, 2]
  # Not a power of two: still a schedule, but its last group holds adjacent positions.
  assert groups_of(12, 2, 1).tolist() == [0, 2, 2, 1, 2, 2, 0, 2, 2, 1, 2, 2]


def authors_rule(base: int, skip: int):
  """The authors' step: commit the still-masked positions of the step's level."""
  levels = authors_levels(BLOCK, base, skip)

  def rule(step_in_block, candidates, confidence, eligible):
    del candidates, confidence
    start = int(np.flatnonzero(eligible)[0]) // BLOCK * BLOCK
    commit = np.zeros(eligible.shape, bool)
    commit[[start + i for i in levels[step_in_block]]] = True
    return commit & eligible

  return rule


def sampler(cache: str = "none", **params) -> SamplerConfig:
  """The file's one setup per cache mode (the cached ones refreshed every step, where cached
  and uncached decoding must agree), sampling at temperature 0.7."""
  return SamplerConfig(gen_length=GEN, block_length=BLOCK, temperature=0.7,
                       strategy=DUS(**params), cache=cache,
                       cache_refresh=0 if cache == "none" else 1)


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_matches_the_numpy_sampler_and_compiles_once(model, cache):
  """Tokens, NFE and unmask order equal the eager sampler's in every cache mode, and a sweep
  over base and skip reuses one program."""
  prompts = make_prompts(3)
  mask = np.ones(prompts.shape, bool)
  key = jax.numpy.stack([jax.random.key(5), jax.random.key(15)])
  # A mask and [B] keys, as the invariance test passes them: its first batch reuses this program.
  programs = []
  for base, skip in ((2, 1), (3, 1), (2, 3)):  # 3, 2 and 1 steps per block
    config = sampler(cache, base=base, skip=skip)
    result = jax.tree.map(np.asarray, generate(model, prompts, config, key, mask))
    tokens, nfe, order = decode_rows(model, prompts, key, gen_length=GEN, block_length=BLOCK,
                                     temperature=0.7, rule=authors_rule(base, skip),
                                     max_steps=GEN)
    np.testing.assert_array_equal(result.tokens, tokens)
    np.testing.assert_array_equal(result.nfe, nfe)
    np.testing.assert_array_equal(result.unmask_order[:, prompts.shape[1]:], order)
    steps_per_block = len(authors_levels(BLOCK, base, skip))
    assert np.all(result.nfe == GEN // BLOCK * steps_per_block)
    programs.append(_generate_jit._cache_size())
  assert programs[0] == programs[-1]  # the later points compiled nothing


@settings(max_examples=3, deadline=None, derandomize=True)
@given(prompt_seed=st.integers(0, 2**16), key_seed=st.integers(0, 2**16))
def test_row_ignores_batch_and_padding(prompt_seed, key_seed):
  """A left-padded row among others decodes as the same row with other padding among other
  rows (same keys), in the dilated order (the uncached setup: its first batch shares the
  program of the parity test above)."""
  model = shared_model()
  config = sampler()
  row = make_prompts(prompt_seed, batch=1, length=3)[0]
  others = make_prompts(prompt_seed + 1, batch=2, length=6)
  key, other_key = jax.random.key(key_seed), jax.random.key(key_seed + 1)
  pad = MODEL_CONFIG.pad_token_id
  ids_a, mask_a = padded(row, 5, pad)
  ids_b, mask_b = padded(row, 6, pad)
  a = generate(model, np.stack([ids_a, others[0, :5]]), config,
               jax.numpy.stack([key, other_key]), np.stack([mask_a, np.ones(5, bool)]))
  b = generate(model, np.stack([others[1], ids_b]), config, jax.numpy.stack([other_key, key]),
               np.stack([np.ones(6, bool), mask_b]))
  np.testing.assert_array_equal(np.asarray(a.tokens)[0, 5:], np.asarray(b.tokens)[1, 6:])
  assert int(a.nfe[0]) == int(b.nfe[1]) == GEN // BLOCK * 3
  pattern = np.tile([0, 2, 1, 2, 0, 2, 1, 2], 2) + np.repeat([0, 3], BLOCK)
  np.testing.assert_array_equal(np.asarray(a.unmask_order)[0, 5:], pattern)
  np.testing.assert_array_equal(np.asarray(b.unmask_order)[1, 6:], pattern)


@pytest.mark.parametrize("params, message", [
    ({"base": 1}, r"dus base must be a whole number >= 2"),
    ({"base": 2.5}, r"dus base must be a whole number >= 2"),
    ({"skip": 0}, r"dus skip must be a whole number >= 1 \(the first stride"),
])
def test_bad_parameters_are_refused_with_the_fix(params, message):
  with pytest.raises(ValueError, match=message):
    DUS(**params)
  if isinstance(params.get("base", 2), int):  # the parser refuses 2.5 as not an int
    with pytest.raises(ValueError, match=message):
      parse_strategy("dus", {k: str(v) for k, v in params.items()})


def test_cli_names_and_params():
  value = parse_strategy("dus", {"base": "3", "skip": "2"})
  assert value == DUS(base=3, skip=2) and not value.uses_schedule
  assert value.to_dict() == {"base": 3, "skip": 2}
  assert value.label() == "dus(base=3, skip=2)"
  # Steps are the strategy's own: any `steps` is accepted and ignored.
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=3, strategy=value)
  assert config.max_block_steps == BLOCK
