"""The PyTorch port of Fast-dLLM's cached decoding: its cached forward, NFE and batch rules.

The cached forward must be exact when the cache is fresh (and differ when it is stale, so
the exactness check can fail); decoding with a cache refreshed at every step must equal
LLaDA's uncached reference sampler (`torch_reference_generate`), token for token.
"""

import numpy as np
import pytest

from lookum_jax.model import tiny
from lookum_jax.testing.models import random_model

torch = pytest.importorskip("torch")
from lookum_jax.testing.torch_fastdllm import (  # noqa: E402  (needs torch)
    _transfer_index,
    forward_with_kv,
    partial_forward,
    torch_fastdllm_generate,
)
from lookum_jax.testing.torch_llada import (  # noqa: E402
    TorchLLaDA,
    torch_reference_generate,
)

CONFIG = tiny(d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, mlp_hidden_size=64)
MASK = CONFIG.mask_token_id
PROMPT_LENGTH, GEN_LENGTH = 5, 16


@pytest.fixture(scope="module")
def torch_model():
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # tiny tensors; OpenMP workers only contend on a small CPU
  yield TorchLLaDA.from_jax(random_model(CONFIG), torch.float64)
  torch.set_num_threads(threads)


def prompts(batch: int, seed: int = 0) -> np.ndarray:
  """Ordinary tokens (below the special ids at the top of the vocabulary)."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, CONFIG.vocab_size - 3, (batch, PROMPT_LENGTH)).astype(np.int64)


def canvas(batch: int, committed: int, seed: int = 0) -> torch.Tensor:
  """A prompt, then `committed` random response tokens, then mask tokens."""
  rng = np.random.default_rng(seed + 100)
  x = np.full((batch, PROMPT_LENGTH + GEN_LENGTH), MASK, np.int64)
  x[:, :PROMPT_LENGTH] = prompts(batch, seed)
  x[:, PROMPT_LENGTH:PROMPT_LENGTH + committed] = rng.integers(0, MASK, (batch, committed))
  return torch.from_numpy(x)


def generate(model, batch=1, seed=0, **options):
  options = dict(dict(steps=8, gen_length=GEN_LENGTH, block_length=4, mask_id=MASK,
                      cache="prefix"), **options)
  return torch_fastdllm_generate(model, prompts(batch, seed), **options)


def cached_logits(model, x, cache_from, mode, start, end):
  """Logits of `[start, end)` of canvas `x` with K/V cached from canvas `cache_from`."""
  _, kv = forward_with_kv(model, cache_from)
  if mode == "prefix":
    kv = [(k[:, :, :start], v[:, :, :start]) for k, v in kv]
    end = x.shape[1]
  return partial_forward(model, x[:, start:end], start, kv), end


def test_full_forward_matches_torch_llada(torch_model):
  x = canvas(2, 6)
  logits, kv = forward_with_kv(torch_model, x)
  np.testing.assert_allclose(logits.numpy(), torch_model(x).numpy(), rtol=0, atol=1e-10)
  assert len(kv) == CONFIG.n_layers
  assert kv[0][0].shape == (2, CONFIG.n_kv_heads, x.shape[1], CONFIG.head_dim)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_partial_forward_is_exact_with_a_fresh_cache(torch_model, mode):
  x = canvas(2, 6)
  full, _ = forward_with_kv(torch_model, x)
  start, end = PROMPT_LENGTH + 4, PROMPT_LENGTH + 8  # the second block of 4
  logits, end = cached_logits(torch_model, x, x, mode, start, end)
  np.testing.assert_allclose(logits.numpy(), full[:, start:end].numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_partial_forward_differs_with_a_stale_cache(torch_model, mode):
  stale, x = canvas(2, 4), canvas(2, 6)  # two more tokens committed inside the block
  full, _ = forward_with_kv(torch_model, x)
  start, end = PROMPT_LENGTH + 4, PROMPT_LENGTH + 8
  logits, end = cached_logits(torch_model, x, stale, mode, start, end)
  assert np.abs(logits.numpy() - full[:, start:end].numpy()).max() > 1e-3


def test_partial_forward_rejects_a_misaligned_cache(torch_model):
  x = canvas(1, 0)
  _, kv = forward_with_kv(torch_model, x)
  short = [(k[:, :, :7], v[:, :, :7]) for k, v in kv]
  with pytest.raises(ValueError, match="cache covers"):
    partial_forward(torch_model, x[:, 9:13], 9, short)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("block_length,steps", [(16, 16), (4, 8)])
def test_refreshing_every_step_equals_the_uncached_reference(torch_model, mode, block_length,
                                                              steps):
  prompt = prompts(2, seed=3)
  tokens, nfe = torch_fastdllm_generate(
      torch_model, prompt, steps=steps, gen_length=GEN_LENGTH, block_length=block_length,
      mask_id=MASK, cache=mode, refresh_every=1, mask_is_candidate=False)
  reference = torch_reference_generate(
      torch_model, prompt, steps=steps, gen_length=GEN_LENGTH, block_length=block_length,
      mask_id=MASK).numpy()
  np.testing.assert_array_equal(tokens, reference)
  assert nfe == steps


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_cached_decoding_fills_the_response(torch_model, mode):
  tokens, _ = generate(torch_model, batch=2, cache=mode)
  assert tokens.shape == (2, PROMPT_LENGTH + GEN_LENGTH) and tokens.dtype == np.int64
  np.testing.assert_array_equal(tokens[:, :PROMPT_LENGTH], prompts(2))
  assert not (tokens == MASK).any()


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("refresh_every", [None, 2])
def test_fixed_step_nfe_is_steps(torch_model, mode, refresh_every):
  for steps in (8, 16):
    assert generate(torch_model, steps=steps, cache=mode, refresh_every=refresh_every)[1] == steps


def test_fixed_step_stops_once_the_block_is_full(torch_model):
  # 8 steps per block of 4: the schedule ends in zero-token steps that are never run.
  _, nfe = generate(torch_model, steps=32, block_length=4)
  assert nfe == GEN_LENGTH


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_threshold_nfe_bounds(torch_model, mode):
  num_blocks = GEN_LENGTH // 4
  for threshold in (0.2, 0.3, 0.4):  # (seed 1: strictly between the bounds)
    tokens, nfe = generate(torch_model, seed=1, cache=mode, threshold=threshold)
    assert 2 * num_blocks < nfe < GEN_LENGTH
    assert not (tokens == MASK).any()
  # Everything committed by the block-start forward: one wasted cached forward per block.
  assert generate(torch_model, cache=mode, threshold=0.0)[1] == 2 * num_blocks


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_unreachable_threshold_is_one_token_per_step(torch_model, mode):
  tokens, nfe = generate(torch_model, cache=mode, threshold=1.5)
  fixed, fixed_nfe = generate(torch_model, cache=mode, steps=GEN_LENGTH)
  np.testing.assert_array_equal(tokens, fixed)
  assert nfe == fixed_nfe == GEN_LENGTH


def test_threshold_is_inclusive_and_top1_always_commits():
  logits = torch.full((1, 4, 8), -torch.inf, dtype=torch.float64)
  logits[0, 0, 1] = 5.0  # confidence 1
  logits[0, 1, [2, 3]] = 0.0  # confidence exactly 0.5
  logits[0, 2, :] = 0.0  # confidence 1/8
  logits[0, 3, 4] = 9.0  # confident but not masked
  eligible = torch.tensor([[True, True, True, False]])
  current = torch.full((1, 4), 7)
  x0, transfer = _transfer_index(logits, eligible, current, None, 0.5, 7, True)
  assert transfer.tolist() == [[True, True, False, False]]
  assert x0[0, :2].tolist() == [1, 2] and x0[0, 3] == 7  # ineligible keeps its token
  _, transfer = _transfer_index(logits, eligible, current, None, 2.0, 7, True)
  assert transfer.tolist() == [[True, False, False, False]]
  # The mask id (7, tied at 1/8 in row 2) can be the argmax unless excluded.
  x0, _ = _transfer_index(logits[:, 2:3], eligible[:, :1], current[:, :1], None, 0.5, 0, True)
  assert x0.item() == 0
  x0, _ = _transfer_index(logits[:, 2:3], eligible[:, :1], current[:, :1], None, 0.5, 0, False)
  assert x0.item() == 1


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_batch_rows_decode_as_alone(torch_model, mode, threshold):
  tokens, nfe = generate(torch_model, batch=2, seed=1, cache=mode, threshold=threshold)
  singles = [torch_fastdllm_generate(
      torch_model, prompts(2, seed=1)[row:row + 1], steps=8, gen_length=GEN_LENGTH,
      block_length=4, mask_id=MASK, cache=mode, threshold=threshold) for row in range(2)]
  for row, (single, _) in enumerate(singles):
    np.testing.assert_array_equal(tokens[row:row + 1], single)
  single_nfes = [single_nfe for _, single_nfe in singles]
  if threshold is None:
    assert nfe == single_nfes[0] == single_nfes[1] == 8
  else:  # per block the batch waits for its slowest row
    assert max(single_nfes) <= nfe <= sum(single_nfes)
    assert nfe > max(single_nfes)  # (seed 1: each row is the slower one in some block)


def mask_loving(model: TorchLLaDA) -> TorchLLaDA:
  """The same model with the mask token's logit far above every other at every position.

  Residual channel 0 is pinned to a constant (embedding 10, no layer writes it), so the head
  column of the mask id reads a positive feature everywhere.
  """
  weights = {name: value.clone() for name, value in model.weights.items()}
  weights["wte"][:, 0] = 10.0
  for i in range(CONFIG.n_layers):
    weights[f"blocks.{i}.attn_out"][:, 0] = 0.0
    weights[f"blocks.{i}.ff_out"][:, 0] = 0.0
  weights["ln_f"][0] = 1.0
  weights["ff_out"][0, MASK] = 100.0
  return TorchLLaDA(model.config, weights)


def test_a_mask_token_candidate_stalls_like_fast_dllm(torch_model):
  model = mask_loving(torch_model)
  logits, _ = forward_with_kv(model, canvas(1, 0))
  assert (logits.argmax(-1) == MASK).all()
  with pytest.raises(RuntimeError, match="IndexError"):
    generate(model)
  with pytest.raises(RuntimeError, match="loop forever"):
    generate(model, threshold=0.5, refresh_every=3)
  tokens, nfe = generate(model, threshold=0.5, mask_is_candidate=False)
  assert not (tokens == MASK).any() and nfe <= GEN_LENGTH


def test_rejects_unsupported_settings(torch_model):
  with pytest.raises(ValueError, match="temperature"):
    generate(torch_model, temperature=0.5)
  with pytest.raises(ValueError, match="cache"):
    generate(torch_model, cache="none")
  with pytest.raises(ValueError, match="2 steps per block"):
    generate(torch_model, steps=4)
  with pytest.raises(ValueError, match="multiple"):
    generate(torch_model, steps=6)
  with pytest.raises(ValueError, match="refresh_every"):
    generate(torch_model, refresh_every=0)
