"""KV-cached decoding (Fast-dLLM's prefix and dual cache) against independent references.

* Model level: a window forward against a fresh cache gives the full forward's logits, for
  every candidate of a look-ahead batch (and a stale cache does not).
* Decoding: token parity with the eager PyTorch port of Fast-dLLM
  (`lookum_jax.testing.torch_fastdllm`) for fixed-step low_confidence and the threshold rule,
  several blocks, batch 1 and 2, on unpadded prompts (Fast-dLLM masks no padding); a padded
  row decodes as it does alone (our attention masks padding).
* Refresh points: refreshing every step equals uncached decoding exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import window_forwards

import lookum_jax as lj
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.testing import MODEL_CONFIG
from lookum_jax.testing.setups import make_prompts

torch = pytest.importorskip("torch")
from lookum_jax.testing.torch_fastdllm import torch_fastdllm_generate  # noqa: E402

PROMPT, GEN = 6, 16


@pytest.mark.parametrize("mode", ["dual", "prefix"])
def test_window_forward_against_a_fresh_cache_is_exact(models, mode):
  model, _ = models
  tokens = jnp.asarray(make_prompts(3, batch=2, length=24))
  mask = jnp.asarray(np.arange(24)[None] >= np.array([[0], [5]]))  # row 1 left-padded
  start, width = 12, 6
  end = start + width if mode == "dual" else 24
  # Two candidate windows per row; candidate 1 changes the window's tokens.
  run = window_forwards(model, tokens, mask, start, end, start, width)
  got, fresh = run.got, run.fresh
  np.testing.assert_allclose(got[:, 0], run.full[:, start:start + width], atol=2e-5, rtol=1e-5)
  # Against a cache of the changed canvas, the changed candidate is exact too...
  np.testing.assert_allclose(fresh[:, 1], run.changed_full[:, start:start + width],
                             atol=2e-5, rtol=1e-5)
  # ...and against the old canvas's cache it is not (bidirectional keys outside the window
  # saw the old window), so the checks above can fail.
  assert np.max(np.abs(np.asarray(got[:, 1] - fresh[:, 1]))) > 1e-3


def test_logits_window_is_a_slice_of_the_full_logits(models):
  model, _ = models
  tokens = jnp.asarray(make_prompts(4, batch=2, length=20))
  full = model(tokens)
  np.testing.assert_allclose(model(tokens, logits_window=(7, 5)), full[:, 7:12], atol=1e-6)


def _ours(model, prompt, *, cache, steps, block, threshold):
  strategy = (lj.sampling.Threshold(tau=threshold) if threshold is not None
              else lj.sampling.LowConfidence())
  config = SamplerConfig(gen_length=GEN, block_length=block, steps=steps, strategy=strategy,
                         cache=cache)
  return generate(model, prompt, config, jax.random.key(0))


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("block, steps, threshold", [
    (4, 8, None), (16, 8, None), (4, 16, 0.9), (8, 16, 0.6)])
@pytest.mark.parametrize("batch", [1, 2])
def test_token_parity_with_fastdllm(models, cache, block, steps, threshold, batch):
  model, reference = models
  prompt = make_prompts(10 + batch, batch=batch, length=PROMPT)
  expected, expected_nfe = torch_fastdllm_generate(
      reference, prompt, steps=steps, gen_length=GEN, block_length=block,
      mask_id=MODEL_CONFIG.mask_token_id, cache=cache, threshold=threshold, mask_is_candidate=False)
  result = _ours(model, prompt, cache=cache, steps=steps, block=block, threshold=threshold)
  np.testing.assert_array_equal(np.asarray(result.tokens), expected)
  nfe = np.asarray(result.nfe)
  if threshold is None:  # one forward per step, block starts included: exactly theirs
    np.testing.assert_array_equal(nfe, expected_nfe)
  else:
    # Fast-dLLM's batch count is the slowest row's per block, plus one wasted forward in a
    # block that its first step completed; ours is each row's own, never wasted.
    assert np.all(nfe <= expected_nfe) and np.all(nfe >= GEN // block)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cache_changes_tokens_without_refresh(models, cache):
  """The cache is an approximation: on this random model it changes the output (so parity
  with Fast-dLLM is a real check, not uncached decoding in disguise). Shown on the input of
  the parity case `[1-4-8-None-<cache>]`, whose tokens are ours: the reference's cached decode
  differs from its decode refreshing every step (uncached), with no compile here."""
  _, reference = models
  prompt = make_prompts(11, batch=1, length=PROMPT)
  run = lambda refresh: torch_fastdllm_generate(
      reference, prompt, steps=8, gen_length=GEN, block_length=4,
      mask_id=MODEL_CONFIG.mask_token_id, cache=cache, mask_is_candidate=False,
      refresh_every=refresh)[0]
  assert np.any(run(None) != run(1))


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("strategy, params", [
    ("low_confidence", None), ("threshold", {"tau": 0.6}),
    # LookUM's greedy path (K=1): its steps go through the look-ahead machinery's base step.
    ("lookum", {"paths": 1})])
def test_refresh_every_step_equals_uncached(models, cache, strategy, params):
  model, _ = models
  prompt = make_prompts(12, batch=2, length=PROMPT)
  base = SamplerConfig(gen_length=GEN, block_length=8, steps=16,
                       strategy=parse_strategy(strategy, params), temperature=0.5)
  plain = generate(model, prompt, base, jax.random.key(3))
  refreshed = generate(model, prompt, base.replace(cache=cache, cache_refresh=1),
                       jax.random.key(3))
  np.testing.assert_array_equal(np.asarray(refreshed.tokens), np.asarray(plain.tokens))
  np.testing.assert_array_equal(np.asarray(refreshed.nfe), np.asarray(plain.nfe))


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_padded_row_decodes_as_alone_under_a_cache(models, cache):
  model, _ = models
  short = make_prompts(13, batch=1, length=4)
  other = make_prompts(14, batch=1, length=PROMPT)
  padded = np.concatenate([np.full((1, PROMPT - 4), MODEL_CONFIG.pad_token_id), short], axis=1)
  batch = np.concatenate([padded, other]).astype(np.int32)
  mask = np.ones(batch.shape, bool)
  mask[0, :PROMPT - 4] = False
  config = SamplerConfig(gen_length=GEN, block_length=8,
                         strategy=parse_strategy("threshold"), cache=cache,
                         temperature=0.7)
  keys = jax.random.split(jax.random.key(5), 2)
  alone = generate(model, short, config, keys[:1])
  together = generate(model, batch, config, keys, mask)
  np.testing.assert_array_equal(np.asarray(together.tokens)[0, PROMPT:],
                                np.asarray(alone.tokens)[0, 4:])
  assert int(together.nfe[0]) == int(alone.nfe[0])


def test_forward_tokens_count_the_window(models):
  model, _ = models
  prompt = make_prompts(15, batch=1, length=PROMPT)
  total = PROMPT + GEN
  # The cached programs are the parity cases [1-4-8-None-*]'s (same config and shapes).
  config = SamplerConfig(gen_length=GEN, block_length=4, steps=8)
  none = generate(model, prompt, config, jax.random.key(0))
  dual = generate(model, prompt, config.replace(cache="dual"), jax.random.key(0))
  prefix = generate(model, prompt, config.replace(cache="prefix"), jax.random.key(0))
  assert int(none.forward_tokens[0]) == 8 * total
  # 4 blocks x (one full forward + 1 window forward of the block)
  assert int(dual.forward_tokens[0]) == 4 * (total + 4)
  # prefix: the queries from the block start to the end (16, 12, 8, 4) per window forward
  assert int(prefix.forward_tokens[0]) == 4 * total + (16 + 12 + 8 + 4)


def test_unsupported_combinations_raise_before_work(models):
  model, _ = models
  prompt = make_prompts(16, batch=1, length=PROMPT)
  with pytest.raises(ValueError, match="cache_refresh needs a cache"):
    SamplerConfig(cache_refresh=2)
  with pytest.raises(ValueError, match="cache must be one of"):
    SamplerConfig(cache="full")
  config = SamplerConfig(gen_length=GEN, block_length=8, steps=8, cache="dual")
  with pytest.raises(ValueError, match="plain function; use cache='none'"):
    lj.sampling.decode(lambda t, m: model(t, m), jnp.asarray(prompt), None, jax.random.key(0),
                       config, mask_token_id=MODEL_CONFIG.mask_token_id, eos_token_id=19,
                       stop_token_ids=(19,))


def test_no_recompile_across_prompts_of_one_bucket(models):
  from lookum_jax.sampling.loop import _generate_jit

  model, _ = models
  config = SamplerConfig(gen_length=GEN, block_length=8, steps=8, cache="dual")
  generate(model, make_prompts(17, batch=2, length=PROMPT), config, jax.random.key(0))
  before = _generate_jit._cache_size()
  generate(model, make_prompts(18, batch=2, length=PROMPT), config, jax.random.key(1),
           np.ones((2, PROMPT), bool))
  generate(model, make_prompts(19, batch=2, length=PROMPT), config, jax.random.key(2),
           np.ones((2, PROMPT), bool))
  assert _generate_jit._cache_size() == before + 1  # the masked variant compiles once
