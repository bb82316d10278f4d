"""PC-Sampler: its score against the paper's formula, the jitted loop against an eager numpy
sampler in every cache mode (a sweep over decay, clip and the prior compiling once), batch
and padding invariance, the token-frequency prior (building, saving, loading, its checks) and
bad parameters."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy_sampler import decode_rows, llada_counts, padded, top_k

from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import LowConfidence, SamplerConfig, StepView, generate
from lookum_jax.sampling.loop import _generate_jit
from lookum_jax.sampling.strategies.pc_sampler import (
    PCSampler,
    load_prior,
    save_prior,
    token_frequency_prior,
)
from lookum_jax.testing import MODEL_CONFIG, make_prompts, random_model

GEN, BLOCK, STEPS = 16, 8, 8
V = MODEL_CONFIG.vocab_size


@functools.cache
def shared_model():
  return random_model(MODEL_CONFIG)


@pytest.fixture(scope="module")
def model():
  return shared_model()


def random_prior(seed: int) -> np.ndarray:
  """Frequencies spread over four orders of magnitude, so calibration reorders positions."""
  weights = np.exp(np.random.default_rng(seed).uniform(-9, 0, V))
  return (weights / weights.sum()).astype(np.float32)


def paper_rule(decay: float, clip: float, prior: np.ndarray | None):
  """PC-Sampler's step as the paper writes it, in float64: the scheduled number of eligible
  positions with the highest `exp(-decay * i) * min(p * -log(prior[x] + 1e-9), clip)`,
  `i` the response index (p alone without a prior)."""
  counts = llada_counts(BLOCK, STEPS // (GEN // BLOCK))

  def rule(step_in_block, candidates, confidence, eligible):
    salience = confidence.copy()
    if prior is not None:
      salience = confidence * -np.log(prior[candidates].astype(np.float64) + 1e-9)
    score = np.exp(-decay * np.arange(GEN)) * np.minimum(salience, clip)
    return top_k(score, eligible, counts[step_in_block])

  return rule


def sampler(cache: str = "none", **params) -> SamplerConfig:
  """The file's one setup per cache mode (the cached ones refreshed every step, where cached
  and uncached decoding must agree), 2 tokens a step, sampling at temperature 0.5."""
  return SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS, temperature=0.5,
                       strategy=PCSampler(**{"prior": random_prior(0), **params}), cache=cache,
                       cache_refresh=0 if cache == "none" else 1)


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_matches_the_numpy_sampler_and_compiles_once(model, cache):
  """Tokens, NFE and unmask order equal the eager sampler's in every cache mode; a sweep over
  decay, clip and the prior reuses one program, and each of them reaches it."""
  prompts = make_prompts(7)
  mask = np.ones(prompts.shape, bool)
  key = jax.numpy.stack([jax.random.key(2), jax.random.key(12)])
  points = [(0.25, 10.0, random_prior(0)), (0.0, 10.0, random_prior(0)),
            (0.25, 0.5, random_prior(0)), (1.0, 10.0, random_prior(1))]
  # A mask and [B] keys, as the invariance test passes them: its first batch reuses this program.
  programs, orders = [], []
  for decay, clip, prior in points:
    config = sampler(cache, decay=decay, clip=clip, prior=prior)
    result = jax.tree.map(np.asarray, generate(model, prompts, config, key, mask))
    tokens, nfe, order = decode_rows(model, prompts, key, gen_length=GEN, block_length=BLOCK,
                                     temperature=0.5, rule=paper_rule(decay, clip, prior),
                                     max_steps=STEPS)
    np.testing.assert_array_equal(result.tokens, tokens)
    np.testing.assert_array_equal(result.nfe, nfe)
    np.testing.assert_array_equal(result.unmask_order[:, prompts.shape[1]:], order)
    programs.append(_generate_jit._cache_size())
    orders.append(order)
  assert programs[0] == programs[-1]  # the later points compiled nothing
  assert len({o.tobytes() for o in orders}) == len(points)  # every number changes the order


@settings(max_examples=3, deadline=None, derandomize=True)
@given(prompt_seed=st.integers(0, 2**16), key_seed=st.integers(0, 2**16))
def test_row_ignores_batch_and_padding(prompt_seed, key_seed):
  """A left-padded row among others decodes as the same row with other padding among other
  rows (same keys), token for token and NFE for NFE (the uncached setup: its first batch
  shares the program of the parity test above)."""
  model = shared_model()
  config = sampler(prior=random_prior(2))
  row = make_prompts(prompt_seed, batch=1, length=3)[0]
  others = make_prompts(prompt_seed + 1, batch=2, length=6)
  key, other_key = jax.random.key(key_seed), jax.random.key(key_seed + 1)
  pad = MODEL_CONFIG.pad_token_id
  ids_a, mask_a = padded(row, 5, pad)
  ids_b, mask_b = padded(row, 6, pad)
  a = generate(model, np.stack([ids_a, others[0, :5]]), config,
               jnp.stack([key, other_key]), np.stack([mask_a, np.ones(5, bool)]))
  b = generate(model, np.stack([others[1], ids_b]), config, jnp.stack([other_key, key]),
               np.stack([np.ones(6, bool), mask_b]))
  np.testing.assert_array_equal(np.asarray(a.tokens)[0, 5:], np.asarray(b.tokens)[1, 6:])
  np.testing.assert_array_equal(np.asarray(a.unmask_order)[0, 5:],
                                np.asarray(b.unmask_order)[1, 6:])
  assert int(a.nfe[0]) == int(b.nfe[1]) == STEPS


def view_of(confidence, candidates, eligible, positions) -> StepView:
  """A hand-built view (the logits are not read)."""
  confidence = jnp.asarray(confidence, jnp.float32)
  w = confidence.shape[0]
  return StepView(
      logits=None, candidates=jnp.asarray(candidates, jnp.int32), confidence=confidence,
      certainty=jnp.log(confidence) - jnp.log1p(-confidence), entropy=jnp.zeros(w),
      margin=jnp.zeros(w), eligible=jnp.asarray(eligible), masked=jnp.asarray(eligible),
      demoted=jnp.zeros(w, bool), num_transfer=jnp.int32(2),
      positions=jnp.asarray(positions, jnp.int32))


def test_score_is_the_log_of_the_papers_score():
  prior = np.full(V, 1e-3, np.float32)
  prior[[3, 4]] = [0.5, 1e-6]  # a frequent token (EOS-like) and a rare one
  view = view_of([0.9, 0.6, 0.9, 0.3], [3, 4, 5, 4], [True] * 4, [8, 9, 10, 11])
  value = PCSampler(decay=0.1, clip=5.0, prior=prior)
  p = np.asarray(view.confidence, np.float64)
  salience = p * -np.log(prior[[3, 4, 5, 4]].astype(np.float64) + 1e-9)
  expected = np.exp(-0.1 * np.arange(8, 12)) * np.minimum(salience, 5.0)
  np.testing.assert_allclose(np.exp(np.asarray(value.score(view))), expected, rtol=1e-5)
  # The confident EOS-like token ranks below the rarer ones: calibration reorders.
  assert np.asarray(value.select(view, None)).tolist() == [False, True, True, False]
  # Without a prior and without decay, the rule is LLaDA's low-confidence rule.
  plain = PCSampler(decay=0.0)
  np.testing.assert_array_equal(plain.select(view, None), LowConfidence().select(view, None))


def test_the_prior_is_built_saved_and_loaded(tmp_path):
  prior = token_frequency_prior([[1, 1, 2], [2, 2, 3]], vocab_size=6)
  np.testing.assert_allclose(prior, np.array([1, 2, 3, 1, 1, 1]) / 6)  # unseen: as if once
  path = tmp_path / "prior.npy"
  save_prior(path, prior)
  np.testing.assert_array_equal(load_prior(path), prior)
  value = parse_strategy("pc_sampler", {"prior": str(path), "decay": "0.5"})
  np.testing.assert_array_equal(np.asarray(value.prior), prior)
  assert value.to_dict() == {"decay": 0.5, "clip": 10.0, "prior": str(path)}
  assert parse_strategy("pc_sampler", value.to_dict()).to_dict() == value.to_dict()
  assert value.label() == f"pc_sampler(decay=0.5, prior={path})"
  described = PCSampler(prior=prior).to_dict()["prior"]
  assert described.startswith("<array [6] sha256:")
  with pytest.raises(ValueError, match="cannot be rebuilt from its record; pass prior=PATH"):
    parse_strategy("pc_sampler", {"prior": described})
  with pytest.raises(ValueError, match=r"token id 9 is outside the vocabulary \[0, 6\)"):
    token_frequency_prior([[1, 9]], vocab_size=6)
  with pytest.raises(ValueError, match="the corpus holds no token ids"):
    token_frequency_prior([], vocab_size=6)


@pytest.mark.parametrize("params, message", [
    ({"decay": -0.1}, r"pc_sampler decay must be >= 0 \(0 = no positional bias"),
    ({"clip": 0.0}, r"pc_sampler clip must be > 0 \(the authors use 10\)"),
    ({"prior": np.ones((2, 3))}, r"must be a 1-D array of token frequencies \[vocab_size\]"),
    ({"prior": np.array([0.5, 2.0])}, r"frequencies in \[0, 1\].*token_frequency_prior"),
    ({"prior": "no/such/prior.npy"}, r"'no/such/prior.npy' does not exist; build one with "
     r"experiments/token_prior.py"),
])
def test_bad_parameters_are_refused_with_the_fix(params, message):
  with pytest.raises(ValueError, match=message):
    PCSampler(**params)


def test_a_prior_of_another_vocabulary_is_refused_before_decoding(model):
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS,
                         strategy=PCSampler(prior=np.full(V - 1, 1 / V, np.float32)))
  with pytest.raises(ValueError, match=rf"pc_sampler prior has {V - 1} entries but the model's "
                     rf"vocabulary has {V} tokens; build the prior with the model's tokenizer"):
    generate(model, make_prompts(0), config, jax.random.key(0))
