"""The adaptive KV-cache refresh and the vicinity block start (`lookum_jax.sampling.refresh`).

* Parity with the eager PyTorch reference (`torch_fastdllm_generate(refresh_threshold=...,
  vicinity=...)`, written from the rule): tokens and each row's NFE, for a threshold at which
  some steps refresh and others do not (checked on the reference), both cache modes.
* Refreshing after every step (threshold 0) equals uncached decoding; the traced threshold
  compiles once.
* A row's schedule is its own: a row decodes, refreshes and is charged the same whatever its
  neighbours (LookUM, whose branching steps the refresh measures by a probe).
* Forward tokens count what each refresh costs; bad settings are refused with the fix named.
"""

import jax
import numpy as np
import pytest

from lookum_jax.parsing import parse_sampler, parse_strategy
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.testing import MODEL_CONFIG
from lookum_jax.testing.setups import make_prompts

torch = pytest.importorskip("torch")
from lookum_jax.testing.torch_fastdllm import torch_fastdllm_generate  # noqa: E402

PROMPT, GEN, BLOCK = 6, 16, 8
TAU = 0.7  # on the test model, some steps' drift is above it and some below (checked below)
BASE = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN)


def _reference(reference, prompt, cache, **options):
  """Each row alone through the eager reference: tokens `[B, T]` and each row's NFE."""
  runs = [torch_fastdllm_generate(reference, prompt[i:i + 1], steps=GEN, gen_length=GEN,
                                  block_length=BLOCK, mask_id=MODEL_CONFIG.mask_token_id,
                                  cache=cache, mask_is_candidate=False, **options)
          for i in range(prompt.shape[0])]
  return np.concatenate([r[0] for r in runs]), np.asarray([r[1] for r in runs])


@pytest.mark.parametrize("cache, vicinity", [("dual", True), ("prefix", False)])
def test_adaptive_refresh_matches_the_eager_reference(models, cache, vicinity):
  model, reference = models
  prompt = make_prompts(21, batch=2, length=PROMPT)
  expected, expected_nfe = _reference(reference, prompt, cache, refresh_threshold=TAU,
                                      vicinity=vicinity)
  # The threshold decides: the reference refreshes some steps, not all, not none.
  _, always = _reference(reference, prompt, cache, refresh_threshold=0.0, vicinity=vicinity)
  assert np.all(expected_nfe > GEN) and np.all(expected_nfe < always)
  config = BASE.replace(cache=cache, cache_refresh="adaptive", refresh_threshold=TAU,
                        block_start="vicinity" if vicinity else "full")
  result = generate(model, prompt, config, jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(result.tokens), expected)
  np.testing.assert_array_equal(np.asarray(result.nfe), expected_nfe)
  # Every refresh costs the whole canvas on top of the window forward that measured it.
  total, blocks = PROMPT + GEN, GEN // BLOCK
  refreshes = np.asarray(result.nfe) - GEN
  window = BLOCK if cache == "dual" else GEN
  vicinity_width = 2 * BLOCK if cache == "dual" else GEN  # prefix: the response
  start = total + (blocks - 1) * (vicinity_width if vicinity else total)
  np.testing.assert_array_equal(np.asarray(result.forward_tokens),
                                start + (GEN - blocks) * window + refreshes * total)


def test_refresh_at_threshold_zero_equals_uncached(models):
  """Threshold 0 refreshes after every step that changed the window: uncached decoding (the
  reference refreshing every step, each of its forwards a full one); a threshold never
  reached is Fast-dLLM's cache. The program is the parity case `[prefix-False]`'s: the
  threshold is traced, so the sweep compiles nothing."""
  from lookum_jax.sampling.loop import _generate_jit

  model, reference = models
  prompt = make_prompts(21, batch=2, length=PROMPT)
  adaptive = BASE.replace(cache="prefix", cache_refresh="adaptive")
  generate(model, prompt, adaptive.replace(refresh_threshold=TAU), jax.random.key(0))
  compiled = _generate_jit._cache_size()
  every = generate(model, prompt, adaptive.replace(refresh_threshold=0.0), jax.random.key(0))
  never = generate(model, prompt, adaptive.replace(refresh_threshold=1e9), jax.random.key(0))
  assert _generate_jit._cache_size() == compiled
  uncached, _ = _reference(reference, prompt, "prefix", refresh_every=1)
  fastdllm, _ = _reference(reference, prompt, "prefix")
  assert np.any(uncached != fastdllm)  # the two ends differ on this input
  np.testing.assert_array_equal(np.asarray(every.tokens), uncached)
  np.testing.assert_array_equal(np.asarray(never.tokens), fastdllm)
  # Each cached step: the window forward that measured the drift, then the refresh.
  np.testing.assert_array_equal(np.asarray(every.nfe), 2 * GEN - GEN // BLOCK)
  np.testing.assert_array_equal(np.asarray(never.nfe), GEN)


def test_each_row_refreshes_as_it_does_alone(models):
  """LookUM's branching steps keep their look-ahead logits, so the refresh measures them by a
  probe; row 0 decodes, refreshes and is charged the same next to either neighbour."""
  model, _ = models
  a, b, c = make_prompts(23, batch=3, length=PROMPT)
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN // 2, temperature=0.5,
                         strategy=parse_strategy("lookum", {"paths": 2}), cache="dual",
                         cache_refresh="adaptive", refresh_threshold=TAU)
  keys = jax.random.split(jax.random.key(7), 2)
  first = generate(model, np.stack([a, b]), config, keys)
  second = generate(model, np.stack([a, c]), config, keys)
  for name in ("tokens", "nfe", "forward_tokens", "num_steps"):
    np.testing.assert_array_equal(np.asarray(getattr(first, name))[0],
                                  np.asarray(getattr(second, name))[0])
  # Refreshes are what the forward tokens hold beyond the block-sized forwards: the rows'
  # counts differ, so the batch's refreshes were kept only where due.
  refreshed = lambda r: np.asarray(r.forward_tokens) - np.asarray(r.nfe) * BLOCK
  assert len({*refreshed(first), *refreshed(second)}) > 1


def test_bad_refresh_settings_are_refused_with_the_fix():
  with pytest.raises(ValueError, match="int >= 0 or 'adaptive'"):
    SamplerConfig(cache="dual", cache_refresh="sometimes")
  with pytest.raises(ValueError, match="needs a cache; set cache='prefix'"):
    SamplerConfig(cache_refresh="adaptive")
  with pytest.raises(ValueError, match="refresh_threshold must be >= 0"):
    SamplerConfig(cache="dual", cache_refresh="adaptive", refresh_threshold=-0.5)
  with pytest.raises(ValueError, match="adaptive refresh only; set cache_refresh='adaptive'"):
    SamplerConfig(cache="dual", refresh_from_layer=1)
  with pytest.raises(ValueError, match="block_start must be one of"):
    SamplerConfig(cache="dual", block_start="near")
  with pytest.raises(ValueError, match="vicinity' refreshes a cache; set cache="):
    SamplerConfig(block_start="vicinity")
  # From text (the command line's path): the mode and the threshold parse.
  config = parse_sampler({"cache": "dual", "cache_refresh": "adaptive",
                          "refresh_threshold": "0.3", "block_start": "vicinity"})
  assert (config.cache_refresh, config.refresh_threshold) == ("adaptive", 0.3)
  assert parse_sampler({"cache": "dual", "cache_refresh": "2"}).cache_refresh == 2


def test_refresh_from_a_layer_past_the_model_is_refused(models):
  model, _ = models
  config = BASE.replace(cache="dual", cache_refresh="adaptive",
                        refresh_from_layer=MODEL_CONFIG.n_layers)
  with pytest.raises(ValueError, match="must be below the model's 2 layers; e.g. "
                                       "refresh_from_layer=1"):
    generate(model, make_prompts(24, batch=1, length=PROMPT), config, jax.random.key(0))


def test_dream_adaptive_refresh_and_vicinity_match_the_eager_reference():
  """Dream's shifted logits under the prefix cache's vicinity start: the window's first
  position reads the output before it from the cache, and the vicinity forward writes the
  outputs it recomputes into the cache (`KVCache.hidden`)."""
  from lookum_jax.model import tiny
  from lookum_jax.testing import random_model
  from lookum_jax.testing.torch_llada import TorchLLaDA

  config = tiny(architecture="dream", qkv_bias=True, rope_theta=1e6, rms_norm_eps=1e-6,
                eos_token_id=19, eot_token_id=101)
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # see conftest.models
  try:
    model = random_model(config)
    reference = TorchLLaDA.from_jax(model, torch.float64)
    prompt = make_prompts(25, batch=2, length=PROMPT)
    runs = [torch_fastdllm_generate(reference, prompt[i:i + 1], steps=GEN, gen_length=GEN,
                                    block_length=BLOCK, mask_id=config.mask_token_id,
                                    cache="prefix", mask_is_candidate=False,
                                    refresh_threshold=TAU, vicinity=True) for i in range(2)]
  finally:
    torch.set_num_threads(threads)
  sampler = BASE.replace(cache="prefix", cache_refresh="adaptive", refresh_threshold=TAU,
                         block_start="vicinity")
  result = generate(model, prompt, sampler, jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(result.tokens),
                                np.concatenate([r[0] for r in runs]))
  np.testing.assert_array_equal(np.asarray(result.nfe), [r[1] for r in runs])
  assert all(GEN < r[1] < 2 * GEN - 2 for r in runs)  # some steps refreshed, not all
