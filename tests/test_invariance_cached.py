"""Every strategy under every KV cache mode keeps a row's tokens independent of its batch
and its padding: a left-padded row among others decodes as the same row with other
padding among other rows (same keys), token for token and NFE for NFE."""

import jax
import numpy as np
import pytest

from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import SamplerConfig, generate
from lookum_jax.testing import MODEL_CONFIG, make_prompts

# Each kind of step under one cache mode, the modes alternating (margin and entropy are the
# same scheduled top-k step as low_confidence with another score); uncached invariance is
# tested in test_sampling_batch.py, test_lookum.py and test_policy_lookum.py.
CASES = [
    ("low_confidence", None, "dual"), ("random", None, "prefix"),
    ("threshold", {"tau": 0.6}, "dual"), ("entropy_bounded", {"gamma": 1.0}, "prefix"),
    ("lookum", {"paths": 2}, "dual"), ("policy", {"mode": "sample"}, "prefix"),
    ("policy_lookum", {"paths": 2}, "dual"),
]


def padded(row: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
  pad = length - row.shape[0]
  ids = np.concatenate([np.full(pad, MODEL_CONFIG.pad_token_id), row]).astype(np.int32)
  return ids, np.arange(length) >= pad


@pytest.mark.parametrize("name, params, cache", CASES, ids=[f"{n}-{c}" for n, _, c in CASES])
def test_row_ignores_batch_and_padding(model_and_policy, name, params, cache):
  model, policy = model_and_policy
  config = SamplerConfig(gen_length=8, block_length=4, steps=4,
                         strategy=parse_strategy(name, params),
                         cache=cache, temperature=0.5)
  if config.strategy.needs_policy:
    config = config.with_policy(policy)
  row = make_prompts(30, batch=1, length=3)[0]
  others = make_prompts(31, batch=2, length=6)
  key, other_key = jax.random.key(8), jax.random.key(9)
  # Batch A: the row padded to 5 first; batch B: the row padded to 6, second.
  ids_a, mask_a = padded(row, 5)
  batch_a = np.stack([ids_a, others[0, :5]])
  mask_a = np.stack([mask_a, np.ones(5, bool)])
  ids_b, mask_b = padded(row, 6)
  batch_b = np.stack([others[1], ids_b])
  mask_b = np.stack([np.ones(6, bool), mask_b])
  a = generate(model, batch_a, config, jax.numpy.stack([key, other_key]), mask_a)
  b = generate(model, batch_b, config, jax.numpy.stack([other_key, key]), mask_b)
  np.testing.assert_array_equal(np.asarray(a.tokens)[0, 5:], np.asarray(b.tokens)[1, 6:])
  assert int(a.nfe[0]) == int(b.nfe[1])
  assert int(a.num_steps[0]) == int(b.num_steps[1])
