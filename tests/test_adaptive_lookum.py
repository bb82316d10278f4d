"""Adaptive LookUM (`search_below`): the K look-aheads run only at steps where the base rule
would commit a position below a confidence; other steps are the base's, at its cost."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lookum_jax import SamplerConfig, generate
from lookum_jax.model import tiny
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import Threshold
from lookum_jax.sampling.loop import _generate_jit
from lookum_jax.testing import random_model

GEN, BLOCK = 16, 8


@pytest.fixture(scope="module")
def model():
  return random_model(tiny(), seed=3)  # confidences spread over about (0.1, 0.7)


def adaptive(search_below, cache="none"):
  return SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN, cache=cache,
                       strategy=parse_strategy("lookum", {
                           "paths": 2, "base": "threshold", "tau": 0.5, "entropy_cost": 1.0,
                           "search_below": search_below}))


def test_search_below_spans_the_base_and_lookum_and_compiles_once(model):
  prompts = jnp.asarray([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]], jnp.int32)
  key = jax.random.key(0)
  base = generate(model, prompts, adaptive(0.0).replace(strategy=Threshold(tau=0.5)), key)
  always = generate(model, prompts, adaptive(None), key)
  before = _generate_jit._cache_size()
  runs = {b: generate(model, prompts, adaptive(b), key) for b in (0.0, 0.35, 1.0)}
  assert _generate_jit._cache_size() - before == 1  # the number is traced
  # Below 0 nothing is uncertain: the base rule, token for token and NFE for NFE.
  np.testing.assert_array_equal(runs[0.0].tokens, base.tokens)
  np.testing.assert_array_equal(runs[0.0].nfe, base.nfe)
  # Every confidence of this model is below 1: every step with a choice searches.
  np.testing.assert_array_equal(runs[1.0].tokens, always.tokens)
  np.testing.assert_array_equal(runs[1.0].nfe, always.nfe)
  # In between, some steps search and some do not.
  middle = np.asarray(runs[0.35].nfe)
  assert np.all(middle >= np.asarray(base.nfe)) and np.all(middle <= np.asarray(always.nfe))
  assert np.any(middle != np.asarray(base.nfe)) and np.any(middle != np.asarray(always.nfe))


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_a_row_searches_the_same_whatever_its_batch(model, cache):
  """Whether a row searches is its own decision: a padded row's tokens and NFE do not depend
  on the row beside it (one program per cache mode; the first test covers no cache)."""
  config = adaptive(0.35, cache)
  row = jnp.asarray([[0, 0, 0, 21, 22, 23]], jnp.int32)
  mask = jnp.asarray([[False] * 3 + [True] * 3, [True] * 6])
  keys = jax.random.split(jax.random.key(5), 2)
  runs = [generate(model, jnp.concatenate([row, jnp.asarray([other], jnp.int32)]), config,
                   keys, mask) for other in ([30, 31, 32, 33, 34, 35], [9, 8, 7, 6, 5, 4])]
  np.testing.assert_array_equal(runs[0].tokens[0], runs[1].tokens[0])
  np.testing.assert_array_equal(runs[0].nfe[0], runs[1].nfe[0])
  assert np.any(np.asarray(runs[0].tokens[1]) != np.asarray(runs[1].tokens[1]))


@pytest.mark.parametrize("params,message", [
    ({"search_below": 1.5}, "search_below must be a confidence in [0, 1]"),
    ({"search_below": 0.5, "selection": "smc", "selection_temperature": 0.1},
     "drop search_below"),
])
def test_bad_search_below_is_refused(params, message):
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
    parse_strategy("lookum", params)


def test_search_below_reads_and_writes_its_json_form():
  value = parse_strategy("lookum", {"base": "threshold", "search_below": 0.6})
  assert value.to_dict()["search_below"] == 0.6
  assert parse_strategy("lookum", value.to_dict()) == value
  assert "search_below=0.6" in value.label()


def test_defer_proposes_the_base_set_without_its_uncertain_commits(model):
  """`pool="defer"`: the alternative keeps only the base's commits at or above `defer_below`
  (at least its most certain one); at `defer_below=0` it is the base set, so no row has a
  choice and LookUM is its base, NFE for NFE."""
  from lookum_jax.sampling import StepView
  from lookum_jax.sampling.lookum import Defer
  logits = jnp.log(jnp.asarray([[0.95, 0.05], [0.6, 0.4], [0.97, 0.03], [0.55, 0.45]]))
  view = StepView.of_logits(logits, jnp.zeros(4, jnp.int32), eligible=jnp.ones(4, bool),
                            masked=jnp.ones(4, bool), demoted=jnp.zeros(4, bool),
                            num_transfer=jnp.int32(0), positions=jnp.arange(4))
  greedy, deferred = Defer(below=0.9).sets(Threshold(tau=0.5), view)
  np.testing.assert_array_equal(greedy, [True, True, True, True])
  np.testing.assert_array_equal(deferred, [True, False, True, False])
  _, only_top = Defer(below=0.99).sets(Threshold(tau=0.5), view)
  np.testing.assert_array_equal(only_top, [False, False, True, False])
  prompts = jnp.asarray([[5, 6, 7, 8, 9]], jnp.int32)
  base = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN,
                       strategy=Threshold(tau=0.3))
  lookum = base.replace(strategy=parse_strategy("lookum", {
      "paths": 2, "base": "threshold", "tau": 0.3, "pool": "defer", "defer_below": 0.0}))
  a, b = (generate(model, prompts, c, jax.random.key(1)) for c in (base, lookum))
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.nfe, b.nfe)
  value = lookum.strategy
  assert parse_strategy("lookum", value.to_dict()) == value
  with pytest.raises(ValueError, match="paths must be 2"):
    parse_strategy("lookum", {"paths": 3, "pool": "defer"})
