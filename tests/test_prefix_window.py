"""The prefix cache's shrinking step window: the grouping of blocks into static window lengths,
`LLaDA.extend`'s `cache_keys`, and tokens that do not depend on how many shapes the program
holds (the parity with Fast-dLLM's port is in test_torch_fastdllm.py)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lookum_jax.sampling import SamplerConfig, generate, prefix_window
from lookum_jax.sampling.prefix_window import prefix_windows
from lookum_jax.testing import MODEL_CONFIG, make_prompts, random_model


def brute_force(remaining: list[int], groups: int) -> int:
  """Least total queries over blocks whose window lengths take at most `groups` values."""
  n = len(remaining)
  best = None
  for k in range(1, groups + 1):
    for cuts in itertools.combinations(range(1, n), k - 1):
      bounds = (0, *cuts, n)
      cost = sum((j - i) * remaining[i] for i, j in itertools.pairwise(bounds))
      best = cost if best is None else min(best, cost)
  return best


@pytest.mark.parametrize("gen, block, shapes", [(256, 32, 8), (64, 8, 3), (40, 4, 4), (48, 8, 1)])
def test_windows_cover_each_block_and_minimise_queries(gen, block, shapes):
  windows = prefix_windows(gen, block, shapes)
  n = gen // block
  remaining = [gen - b * block for b in range(n)]
  assert len(windows.lengths) == min(shapes, n) and len(windows.shape_of) == n
  for b, shape in enumerate(windows.shape_of):
    length, cached = windows.lengths[shape], windows.cached_response[shape]
    # The window [G - length, G) holds the block and everything after it; the positions it
    # reads from the cache end at or after the block start, and at or after the window start.
    assert remaining[b] <= length and gen - length <= b * block <= cached
  assert sum(windows.length_of) == brute_force(remaining, min(shapes, n))
  if shapes >= n:
    assert windows.length_of == tuple(remaining)  # exactly Fast-dLLM's x[block_start:]
  with pytest.raises(ValueError, match="multiple of block_length"):
    prefix_windows(gen + 1, block)


def test_extend_with_fewer_cache_keys_gives_the_same_logits():
  model = random_model(MODEL_CONFIG)
  total, start, block_start = 20, 8, 12
  tokens = jnp.asarray(make_prompts(4, batch=2, length=total))
  mask = jnp.asarray(np.arange(total)[None] >= np.array([[0], [3]]))  # row 1 left-padded
  _, cache = jax.jit(model.prefill)(tokens, mask)
  window = tokens[:, None, start:]
  extend = lambda keys: jax.jit(lambda c: model.extend(  # noqa: E731
      window, start, c, mask, fresh_from=block_start, cache_keys=keys))(cache)
  np.testing.assert_allclose(extend(block_start), extend(None), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="does not recompute"):
    model.extend(tokens[:, None, start:start + 4], start, cache, mask, cache_keys=block_start)
  with pytest.raises(ValueError, match="must be in"):
    extend(total + 1)


def test_tokens_do_not_depend_on_the_number_of_window_shapes(monkeypatch):
  """Shared shapes (queries before the block start forwarded and dropped) and one shape per
  block: the same row, the same tokens. The programs differ in their prompt padding too (a
  row ignores padding), so neither is reused from the other's compile, and the window
  lengths show in `forward_tokens`."""
  model = random_model(MODEL_CONFIG)
  row = make_prompts(41, batch=1, length=5)[0]
  config = SamplerConfig(gen_length=12, block_length=4, steps=12, cache="prefix")
  results = {}
  for shapes, pad in ((2, 1), (3, 2)):
    monkeypatch.setattr(prefix_window, "MAX_PREFIX_SHAPES", shapes)
    ids = np.concatenate([np.full(pad, MODEL_CONFIG.pad_token_id), row])[None].astype(np.int32)
    mask = np.arange(ids.shape[1])[None] >= pad
    result = generate(model, ids, config, jax.random.key(3), mask)
    windows = prefix_windows(12, 4)
    total = ids.shape[1] + 12
    # 3 blocks x (a full forward + 3 window forwards)
    assert int(result.forward_tokens[0]) == 3 * total + 3 * sum(windows.length_of)
    results[shapes] = np.asarray(result.tokens)[0, pad:]
  assert prefix_windows(12, 4, 2).length_of in ((12, 12, 4), (12, 8, 8))  # a shared shape
  np.testing.assert_array_equal(results[2], results[3])
