"""Dream under the prefix and dual KV caches.

Dream's logits are shifted (position i reads the output of position i - 1), so a cached
window's first position needs the output of the position before it: the cache keeps every
position's last-layer output from its full forward (`KVCache.hidden`).

* Model level: a window forward against a fresh cache gives the full forward's logits, the
  window's first position included, for every candidate; against a stale cache the first
  position reads the cached output.
* Decoding: token parity with the eager PyTorch port's Dream mode
  (`lookum_jax.testing.torch_fastdllm`) for fixed-step low_confidence and threshold, both
  caches, two blocks, batch 1 and 2; a left-padded row decodes as alone; a LookUM row ignores
  its batch; refreshing every step equals uncached decoding.

Programs are shared between tests (same config and shapes) to keep compiles few.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import window_forwards

from lookum_jax.model import tiny
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.sampling.lookum import LookUM
from lookum_jax.sampling.strategies import LowConfidence, Threshold
from lookum_jax.testing import random_model
from lookum_jax.testing.setups import make_prompts

torch = pytest.importorskip("torch")
from lookum_jax.testing.torch_fastdllm import torch_fastdllm_generate  # noqa: E402
from lookum_jax.testing.torch_llada import TorchLLaDA  # noqa: E402

CONFIG = tiny(architecture="dream", qkv_bias=True, rope_theta=1e6, rms_norm_eps=1e-6,
              eos_token_id=19, eot_token_id=101)
PROMPT, GEN, BLOCK, STEPS = 6, 16, 8, 8
TAU = 0.6


@pytest.fixture(scope="module")
def dream():
  """`(model, torch_model)`: a random Dream (q/k/v biases, shifted logits) and its float64
  PyTorch twin."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # see conftest.models
  model = random_model(CONFIG)
  yield model, TorchLLaDA.from_jax(model, torch.float64)
  torch.set_num_threads(threads)


def strategy(name: str):
  return {"low_confidence": LowConfidence, "threshold": lambda: Threshold(tau=TAU),
          "lookum": lambda: LookUM(paths=2)}[name]()


def sampler(name: str, cache: str, **changes) -> SamplerConfig:
  return SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS,
                       strategy=strategy(name), cache=cache, **changes)


def reference(torch_model, prompt, name, cache, **kwargs):
  return torch_fastdllm_generate(
      torch_model, prompt, steps=STEPS, gen_length=GEN, block_length=BLOCK,
      mask_id=CONFIG.mask_token_id, cache=cache,
      threshold=TAU if name == "threshold" else None, mask_is_candidate=False, **kwargs)


# ---------------------------------------------------------------- model level

@pytest.mark.parametrize("mode", ["dual", "prefix"])
def test_window_forward_against_a_fresh_cache_is_exact(dream, mode):
  model, _ = dream
  length, width = 24, 6
  tokens = jnp.asarray(make_prompts(3, batch=2, length=length))
  mask = jnp.asarray(np.arange(length)[None] >= np.array([[0], [5]]))  # row 1 left-padded
  block = 12  # the fresh part starts here
  # dual: the window is the block; prefix: the window runs from 8 to the end, positions
  # before the block attending through the cache (as the loop's prefix mode).
  start, end = (block, block + width) if mode == "dual" else (8, length)
  offset = block - start
  run = window_forwards(model, tokens, mask, start, end, block, width, offset=offset,
                        fresh_from=block)
  got, fresh, full, cache, windows = run.got, run.fresh, run.full, run.cache, run.windows
  np.testing.assert_allclose(got[:, 0], full[:, block:block + width], atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(fresh[:, 1], run.changed_full[:, block:block + width],
                             atol=2e-5, rtol=1e-5)
  # Against the old canvas's cache the changed candidate's first position reads the cached
  # output of the position before the block (so it equals the old canvas's logits there),
  # while its later positions read its own fresh outputs.
  np.testing.assert_allclose(got[:, 1, 0], full[:, block], atol=2e-5, rtol=1e-5)
  assert np.max(np.abs(np.asarray(got[:, 1, 1:] - fresh[:, 1, 1:]))) > 1e-3
  with pytest.raises(ValueError, match="KVCache.hidden"):  # a cache without the outputs
    model.extend(windows, start, cache.replace(hidden=None), mask)


# ---------------------------------------------------------------- decoding

@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("name", ["low_confidence", "threshold"])
def test_token_parity_with_the_eager_reference(dream, name, cache):
  model, torch_model = dream
  prompt = make_prompts(20, batch=2, length=PROMPT)
  expected, expected_nfe = reference(torch_model, prompt, name, cache)
  # An all-true mask: the same program as the padded batch below.
  result = generate(model, prompt, sampler(name, cache), jax.random.key(0),
                    np.ones(prompt.shape, bool))
  np.testing.assert_array_equal(np.asarray(result.tokens), expected)
  uncached, _ = reference(torch_model, prompt, name, cache, refresh_every=1)
  assert np.any(uncached != expected)  # the parity is a cached decode's, not uncached
  nfe = np.asarray(result.nfe)
  if name == "threshold":  # ours is each row's own, never a wasted forward (test_cache.py)
    assert np.all(nfe <= expected_nfe) and np.all(nfe >= GEN // BLOCK)
    return
  np.testing.assert_array_equal(nfe, expected_nfe)
  # Forward tokens as for LLaDA: 2 blocks x (one full forward + 3 window forwards); a prefix
  # window runs from its block's start to the end (16, then 8 positions).
  total = PROMPT + GEN
  windows = (BLOCK, BLOCK) if cache == "dual" else (GEN, GEN - BLOCK)
  np.testing.assert_array_equal(np.asarray(result.forward_tokens),
                                2 * total + 3 * sum(windows))


@pytest.mark.parametrize("name, cache", [("low_confidence", "prefix"), ("threshold", "dual")])
def test_padded_row_decodes_as_alone_and_as_the_reference(dream, name, cache):
  model, torch_model = dream
  short = make_prompts(21, batch=1, length=4)
  other = make_prompts(22, batch=1, length=PROMPT)
  padded = np.concatenate([np.full((1, PROMPT - 4), CONFIG.pad_token_id), short], axis=1)
  batch = np.concatenate([padded, other]).astype(np.int32)
  mask = np.ones(batch.shape, bool)
  mask[0, :PROMPT - 4] = False
  config = sampler(name, cache)
  alone = generate(model, short, config, jax.random.key(1))
  together = generate(model, batch, config, jax.random.key(2), mask)
  expected, _ = reference(torch_model, short, name, cache)  # batch 1
  np.testing.assert_array_equal(np.asarray(alone.tokens), expected)
  np.testing.assert_array_equal(np.asarray(together.tokens)[0, PROMPT:], expected[0, 4:])
  assert int(together.nfe[0]) == int(alone.nfe[0])
  assert int(together.forward_tokens[0]) == int(alone.forward_tokens[0]) + 2 * (PROMPT - 4)


def test_lookum_row_ignores_its_batch(dream):
  """LookUM's K look-ahead windows share one cache (and its cached outputs): a left-padded
  row decodes the same beside different rows."""
  model, _ = dream
  row = make_prompts(23, batch=1, length=4)[0]
  ids = np.concatenate([np.full(PROMPT - 4, CONFIG.pad_token_id), row]).astype(np.int32)
  mask = np.stack([np.arange(PROMPT) >= PROMPT - 4, np.ones(PROMPT, bool)])
  config = sampler("lookum", "dual", temperature=0.5)
  results = []
  for seed in (24, 25):
    batch = np.stack([ids, make_prompts(seed, batch=1, length=PROMPT)[0]])
    keys = jnp.stack([jax.random.key(8), jax.random.key(seed)])
    results.append(generate(model, batch, config, keys, mask))
  a, b = results
  np.testing.assert_array_equal(np.asarray(a.tokens)[0], np.asarray(b.tokens)[0])
  assert int(a.nfe[0]) == int(b.nfe[0]) and int(a.num_steps[0]) == int(b.num_steps[0])
  assert np.any(np.asarray(a.tokens)[1] != np.asarray(b.tokens)[1])
  assert not np.any(np.asarray(a.tokens)[0, PROMPT:] == CONFIG.mask_token_id)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_refresh_every_step_equals_uncached(dream, cache):
  """Refresh points are where cached and uncached decoding agree exactly; both equal the
  eager reference refreshing every step (each of its forwards a full one)."""
  model, torch_model = dream
  prompt = make_prompts(26, batch=2, length=PROMPT)
  config = sampler("low_confidence", "none")
  plain = generate(model, prompt, config, jax.random.key(3))  # one program for both caches
  refreshed = generate(model, prompt, config.replace(cache=cache, cache_refresh=1),
                       jax.random.key(3))
  np.testing.assert_array_equal(np.asarray(refreshed.tokens), np.asarray(plain.tokens))
  np.testing.assert_array_equal(np.asarray(refreshed.nfe), np.asarray(plain.nfe))
  expected, expected_nfe = reference(torch_model, prompt, "low_confidence", cache,
                                     refresh_every=1)
  np.testing.assert_array_equal(np.asarray(plain.tokens), expected)
  np.testing.assert_array_equal(np.asarray(plain.nfe), expected_nfe)
