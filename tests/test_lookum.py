"""LookUM: K = 1 is the base strategy, the verifier decides, K look-aheads are one call."""

import dataclasses
import json
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lookum_jax import SamplerConfig, generate
from lookum_jax.model import tiny
from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import (
  SMC,
  AboveThreshold,
  Eligible,
  EntropyBounded,
  ImportanceSampling,
  LookUM,
  LowConfidence,
  Margin,
  Oracle,
  Proposal,
  Threshold,
  TopK,
  Verifier,
  decode,
)
from lookum_jax.sampling.strategies.pc_sampler import PCSampler
from lookum_jax.testing import random_model

GEN, BLOCK, STEPS = 16, 8, 8
MASK, EOS, VOCAB = 127, 126, 128


@pytest.fixture(scope="module")
def model():
  """Peaked random weights: confidences spread over about (0.1, 0.7) instead of tying near
  1/vocab as under the 0.02 init, so which positions a path commits matters."""
  return random_model(tiny(), seed=3)


@pytest.fixture(scope="module")
def prompts():
  return jnp.asarray([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]], jnp.int32)


@pytest.mark.parametrize("base,params,extra", [
    ("low_confidence", {}, {}),
    ("low_confidence", {}, {"selection": "smc", "selection_temperature": 0.1}),
    ("margin", {}, {}),
    ("threshold", {"tau": 0.3}, {}),
])
def test_one_path_is_the_base_strategy(model, prompts, base, params, extra):
  base_config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS,
                              strategy=parse_strategy(base, params))
  lookum_config = base_config.replace(strategy=parse_strategy(
      "lookum", {"paths": 1, "base": base, **params, **extra}))
  key = jax.random.key(0)
  expected = generate(model, prompts, base_config, key)
  got = generate(model, prompts, lookum_config, key)
  np.testing.assert_array_equal(got.tokens, expected.tokens)
  np.testing.assert_array_equal(got.unmask_order, expected.unmask_order)
  np.testing.assert_array_equal(got.nfe, expected.nfe)


def _fake_model(favoured_position: int):
  """Logits with a fixed confidence ranking; sharp everywhere once `favoured_position`
  holds a token, flat otherwise: a certainty verifier should pick the path committing it.
  Sharpening keeps the ranking (the strategies rank by exact log-odds, so a ranking that
  only rounding to probability 1.0 hid would show)."""
  total = 4 + GEN
  ramp = jnp.linspace(3.0, 0.0, total)  # earlier positions more confident

  def model_fn(tokens, attention_mask=None):
    del attention_mask
    base = jnp.zeros(tokens.shape + (VOCAB,)).at[..., 7].set(ramp)
    sharp = (tokens[:, favoured_position] != MASK)[:, None, None]
    return jnp.where(sharp, base.at[..., 7].add(20.0), base)

  return model_fn


def test_verifier_picks_the_path_it_prefers():
  prompt = jnp.full((1, 4), 5, jnp.int32)
  favoured = 4 + 1  # the second most confident response position
  config = SamplerConfig(
      gen_length=GEN, block_length=GEN, steps=GEN,
      strategy=parse_strategy("lookum", {
          "paths": 6, "pool_size": 2, "proposal_temperature": 100.0,
          "selection_temperature": 0.0}))
  result = jax.jit(lambda k: decode(
      _fake_model(favoured), prompt, None, k, config, mask_token_id=MASK, eos_token_id=EOS,
      stop_token_ids=(EOS,)))(jax.random.key(0))
  order = np.asarray(result.unmask_order[0])
  # Greedy would commit position 4 first; the verifier prefers committing `favoured`.
  assert order[favoured] == 0
  assert order[4] == 1


def test_a_pool_of_one_is_the_greedy_strategy(model, prompts):
  """With a flat proposal over a one-position pool every candidate is the greedy set."""
  base = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN)
  config = base.replace(strategy=parse_strategy("lookum", {"paths": 3, "pool_size": 1}))
  key = jax.random.key(1)
  np.testing.assert_array_equal(generate(model, prompts, config, key).tokens,
                                generate(model, prompts, base, key).tokens)


def _traced_calls(config, prompts, model):
  calls = []

  def model_fn(tokens, attention_mask=None):
    # Not the loop's shape inference (`jax.eval_shape` of the first forward).
    if not any(frame.name == "eval_shape" for frame in traceback.extract_stack()):
      calls.append(tokens.shape)
    return model(tokens, attention_mask)

  jax.jit(lambda k: decode(model_fn, prompts, None, k, config, mask_token_id=MASK,
                           eos_token_id=EOS, stop_token_ids=(EOS,))).lower(jax.random.key(0))
  return calls


@pytest.mark.parametrize("paths", [2, 3])
def test_lookahead_passes_are_one_batched_call(model, prompts, paths):
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS,
                         strategy=parse_strategy("lookum", {"paths": paths}))
  total = prompts.shape[1] + GEN
  # A block's opening forward; then, inside the block's loop, either one call over all
  # B * K look-ahead canvases (a branching step) or the base step's call (a step without a
  # choice).
  assert _traced_calls(config, prompts, model) == [(2, total), (2 * paths, total), (2, total)]


@pytest.mark.parametrize("paths,cfg_scale,branch_every", [
    (2, 0.0, 1), (3, 0.0, 1), (2, 1.0, 1), (3, 0.0, 2)])
def test_nfe_counts_every_forward(model, prompts, paths, cfg_scale, branch_every):
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS, cfg_scale=cfg_scale,
                         strategy=parse_strategy("lookum", {
                             "paths": paths, "branch_every": branch_every, "dedupe": False}))
  result = generate(model, prompts, config, jax.random.key(0))
  per_step = BLOCK // (STEPS // (GEN // BLOCK))  # tokens committed per step
  forwards = 1  # the first canvas
  for step in range(STEPS):
    left_in_block = BLOCK - per_step * (step % (STEPS * BLOCK // GEN))
    # Branch when the pool (5 by default) holds more positions than a step commits.
    if min(5, left_in_block) > per_step and step % branch_every == 0:
      forwards += paths  # K look-aheads, the chosen one is the next step's forward
    elif step < STEPS - 1:
      forwards += 1  # a base step's forward (none after the very last step)
  expected = (2 if cfg_scale else 1) * forwards
  np.testing.assert_array_equal(result.nfe, [expected, expected])
  np.testing.assert_array_equal(result.num_steps, [STEPS, STEPS])


def test_no_forward_is_spent_on_steps_without_a_choice(model, prompts):
  """One token per step with a pool of one: every candidate is greedy, so LookUM costs
  what its base strategy costs."""
  base = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN)
  lookum = base.replace(strategy=parse_strategy("lookum", {"paths": 3, "pool_size": 1}))
  np.testing.assert_array_equal(generate(model, prompts, lookum, jax.random.key(0)).nfe,
                                generate(model, prompts, base, jax.random.key(0)).nfe)


def test_same_key_same_tokens_and_keys_matter(model, prompts):
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS,
                         strategy=parse_strategy("lookum", {
                             "paths": 3, "selection_temperature": 10.0,
                             "proposal_temperature": 10.0, "pool_size": 8}))
  first = generate(model, prompts, config, jax.random.key(7))
  again = generate(model, prompts, config, jax.random.key(7))
  np.testing.assert_array_equal(first.tokens, again.tokens)
  orders = {tuple(np.asarray(generate(model, prompts, config, jax.random.key(k))
                             .unmask_order).ravel()) for k in range(4)}
  assert len(orders) > 1


@pytest.mark.parametrize("params", [
    {"paths": 3, "verifier": "confidence", "verifier_scope": "masked"},
    {"paths": 2, "verifier": "margin", "verifier_scope": "block"},
    {"paths": 2, "verifier_scope": "response", "sample_tokens": True},
    {"paths": 2, "pool": "threshold", "pool_threshold": 0.0},
    {"paths": 2, "base": "threshold", "tau": 0.3},
])
def test_variants_decode_every_position_in_block_order(model, prompts, params):
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS,
                         strategy=parse_strategy("lookum", params))
  result = generate(model, prompts, config, jax.random.key(0))
  tokens, order = np.asarray(result.tokens), np.asarray(result.unmask_order)
  np.testing.assert_array_equal(tokens[:, :5], np.asarray(prompts))
  assert (tokens[:, 5:] != MASK).all()
  assert (order[:, 5:] >= 0).all()
  first_block, second_block = order[:, 5:5 + BLOCK], order[:, 5 + BLOCK:]
  assert (first_block.max(axis=1) < second_block.min(axis=1)).all()


@pytest.mark.parametrize("bad,message", [
    ({"paths": 0}, "paths must be >= 1"),
    ({"selection": "smc", "selection_temperature": 0.0}, "needs selection_temperature > 0"),
    ({"verifier": "oracle"}, "verifier must be one of"),
    ({"verifier_scope": "everything"}, "verifier_scope must be one of"),
    ({"verifier_scope": "sequence"}, r"verifier_scope='sequence' was removed.*'response'"),
    ({"base": "random"}, "base must be one of"),
    ({"selection_temperature": -1.0}, "selection_temperature must be >= 0"),
    ({"num_paths": 2}, "unknown parameter"),
])
def test_bad_options_are_named(bad, message):
  with pytest.raises(ValueError, match=message):
    SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=STEPS,
                  strategy=parse_strategy("lookum", bad))


@pytest.mark.parametrize("setting,pool", [(LookUM(), 3), (LookUM.paper(), 5)])
def test_the_default_setting_branches_within_its_pool_and_keeps_the_certain_path(setting, pool):
  """`LookUM()` (2 paths, a pool of the 3 most confident positions, the common scope) and
  the paper's setting (a pool of 5, the whole response), on a model whose predictions all
  sharpen once the second most confident position is committed: greedy (1 path) always
  commits the most confident position first; the second path is drawn from the pool only,
  and when it holds the sharpening position the verifier keeps it."""
  rows, favoured = 16, 4 + 1
  prompt = jnp.full((rows, 4), 5, jnp.int32)
  keys = jax.random.split(jax.random.key(0), rows)

  def first_commits(strategy):
    config = SamplerConfig(gen_length=GEN, block_length=GEN, steps=GEN, strategy=strategy)
    result = jax.jit(lambda k: decode(
        _fake_model(favoured), prompt, None, k, config, mask_token_id=MASK, eos_token_id=EOS,
        stop_token_ids=(EOS,)))(keys)
    return np.argmin(np.where(np.asarray(result.unmask_order) < 0, GEN, result.unmask_order),
                     axis=1), np.asarray(result.nfe)

  assert SamplerConfig(gen_length=GEN, block_length=GEN, steps=GEN,
                       strategy=parse_strategy("lookum")).strategy == LookUM()
  greedy, greedy_nfe = first_commits(LookUM(paths=1))
  first, nfe = first_commits(setting)
  np.testing.assert_array_equal(greedy, 4)
  assert set(first.tolist()) <= set(range(4, 4 + pool))  # the most confident positions
  assert (first == favoured).sum() >= 2  # the sharpening path wins wherever it is drawn
  assert np.all(nfe > greedy_nfe) and np.all(nfe <= 2 * greedy_nfe)  # <= 2 forwards a step


@pytest.mark.parametrize("resample_threshold", [0.0, 1.0])
def test_smc_particles_decode_fully_and_count_their_forwards(model, prompts,
                                                             resample_threshold):
  paths = 3
  config = SamplerConfig(
      gen_length=GEN, block_length=BLOCK, steps=STEPS,
      strategy=parse_strategy("lookum", {
          "paths": paths, "selection": "smc", "selection_temperature": 0.05,
          "resample_threshold": resample_threshold}))
  result = generate(model, prompts, config, jax.random.key(0))
  tokens, order = np.asarray(result.tokens), np.asarray(result.unmask_order)
  assert tokens.shape == (2, 5 + GEN)
  np.testing.assert_array_equal(tokens[:, :5], np.asarray(prompts))
  assert (tokens[:, 5:] != MASK).all() and (order[:, 5:] >= 0).all()
  assert (order[:, 5:5 + BLOCK].max(axis=1) < order[:, 5 + BLOCK:].min(axis=1)).all()
  # Each particle: the first forward plus one per step but the last.
  np.testing.assert_array_equal(result.nfe, [paths * STEPS] * 2)
  assert result.strategy_state["log_weight"].shape == (2, paths)


def test_smc_resampling_copies_whole_particles():
  """Always resampling with a sharp verifier collapses a row onto the favoured path."""
  prompt = jnp.full((1, 4), 5, jnp.int32)
  favoured = 4 + 1
  config = SamplerConfig(
      gen_length=GEN, block_length=GEN, steps=GEN,
      strategy=parse_strategy("lookum", {
          "paths": 8, "pool_size": 2, "proposal_temperature": 100.0, "selection": "smc",
          "selection_temperature": 1e-3, "resample_threshold": 1.0}))
  result = jax.jit(lambda k: decode(
      _fake_model(favoured), prompt, None, k, config, mask_token_id=MASK, eos_token_id=EOS,
      stop_token_ids=(EOS,)))(jax.random.key(0))
  assert int(result.unmask_order[0, favoured]) == 0
  assert result.nfe.shape == (1,)


@pytest.mark.parametrize("selection,base", [
    ("is", {}), ("smc", {}),
    ("is", {"base": "threshold", "tau": 0.7})])
def test_a_row_samples_the_same_alone_and_in_a_padded_batch(model, selection, base):
  """Per-row keys: LookUM's random proposals do not depend on the batch's padding, and a row
  counts its own forwards (with the threshold base the rows take different step counts)."""
  config = SamplerConfig(
      gen_length=GEN, block_length=BLOCK, steps=STEPS,
      strategy=parse_strategy("lookum", {
          "paths": 3, "pool_size": 8, "proposal_temperature": 10.0,
          "selection_temperature": 1.0, "sample_tokens": True, "selection": selection,
          **base}))
  short = jnp.asarray([[21, 22, 23]], jnp.int32)
  longer = jnp.asarray([[30, 31, 32, 33, 34, 35]], jnp.int32)
  padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), short], axis=1)
  batch = jnp.concatenate([padded, longer], axis=0)
  mask = jnp.asarray([[False] * 3 + [True] * 3, [True] * 6])
  keys = jax.random.split(jax.random.key(5), 2)
  alone = generate(model, short, config, keys[:1])
  together = generate(model, batch, config, keys, mask)
  np.testing.assert_array_equal(alone.tokens[0, 3:], together.tokens[0, 6:])
  np.testing.assert_array_equal(alone.nfe[0], together.nfe[0])


def test_duplicate_candidates_cost_no_nfe(model, prompts):
  """With a pool of 2 and one commit per step, at most 2 of K=4 candidates differ: a
  branching step costs its distinct candidates, not K; without dedupe it costs K."""
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN,
                         strategy=parse_strategy("lookum", {"paths": 4, "pool_size": 2}))
  deduped = generate(model, prompts, config, jax.random.key(0))
  every_candidate = generate(model, prompts, config.replace(
      strategy=parse_strategy("lookum", {"paths": 4, "pool_size": 2, "dedupe": False})),
      jax.random.key(0))
  steps = GEN  # one token per step
  # Without dedupe: K per branching step (all but each block's last), 1 for the others.
  branching = GEN - GEN // BLOCK
  plain = GEN // BLOCK  # each block's opening forward... and its last step costs nothing
  assert np.all(np.asarray(every_candidate.nfe) == 4 * branching + plain)
  assert np.all(np.asarray(deduped.nfe) <= 2 * branching + plain)
  assert np.all(np.asarray(deduped.nfe) >= branching + plain)
  np.testing.assert_array_equal(deduped.num_steps, [steps, steps])


def test_the_papers_setting_is_a_named_option():
  paper = LookUM.paper()
  assert paper == LookUM(paths=2, base=LowConfidence(), proposal=Proposal(pool=TopK(size=5)),
                         verifier=Verifier("neg_entropy", "response"),
                         selector=ImportanceSampling(temperature=0.01), dedupe=False)
  flat = paper.to_dict()
  assert (flat["paths"], flat["pool_size"], flat["verifier"], flat["verifier_scope"],
          flat["selection"], flat["selection_temperature"], flat["dedupe"]) == (
              2, 5, "neg_entropy", "response", "is", 0.01, False)
  assert LookUM.from_params(flat) == paper  # the value reads its own JSON form
  assert LookUM.paper(paths=3) == dataclasses.replace(paper, paths=3)
  with pytest.raises(ValueError, match="paths must be >= 1"):
    LookUM.paper(paths=0)


@pytest.mark.parametrize("value", [
    LookUM(), LookUM.paper(paths=3),
    LookUM(paths=2, base=Threshold(tau=0.7), selector=Oracle(), dedupe=False),
    LookUM(base=EntropyBounded(gamma=0.5), proposal=Proposal(pool=Eligible(), temperature=0.1,
                                                             sample_tokens=True),
           verifier=Verifier("margin", "masked", entropy_cost=0.5), branch_every=2),
    LookUM(base=Margin(), proposal=Proposal(pool=AboveThreshold(threshold=0.3))),
    SMC(paths=3, temperature=0.1, resample_threshold=1.0, greedy_particle=False),
    LookUM(base=PCSampler(decay=0.25)),  # a rule with no flat name nests
    SMC(paths=2, base=PCSampler(decay=0.0, clip=5.0)),
])
def test_a_value_reads_its_own_json_form(value):
  """The flat JSON form (today's parameter names) round-trips every composition."""
  flat = json.loads(json.dumps(value.to_dict()))
  assert LookUM.from_params(flat) == value
  assert parse_strategy("lookum", flat) == value


def test_a_base_with_no_flat_name_nests_in_the_json_form():
  """Any commit rule is a base; one with no flat name (PCSampler) is written as
  `{"strategy": name, **params}`, so an evaluation's record of it cannot fail after decoding."""
  value = LookUM(base=PCSampler(decay=0.25))
  assert value.to_dict()["base"] == {"strategy": "pc_sampler", "decay": 0.25, "clip": 10.0,
                                     "prior": None}
  assert value.label() == "lookum(base=pc_sampler(decay=0.25, clip=10.0, prior=None))"
  assert parse_strategy("lookum", {"base": "pc_sampler", "base.decay": "0.25"}) == value
  assert LookUM.from_params({"base": {"strategy": "threshold", "tau": 0.7}}).base == Threshold(
      tau=0.7)  # the nested form's own numbers, not the flat tau's default


@pytest.mark.parametrize("base, message", [
    ({"decay": 0.2}, "needs its strategy's name under 'strategy'"),
    ({"strategy": "klass"}, "base 'klass' is not a commit rule LookUM can branch on"),
    ({"strategy": "pc_sampler", "decay": -1}, "pc_sampler decay must be >= 0"),
])
def test_a_nested_base_that_is_not_a_rule_raises(base, message):
  with pytest.raises(ValueError, match=message):
    LookUM.from_params({"base": base})


def test_lookum_reads_as_it_is_written():
  value = LookUM(paths=2, base=Threshold(tau=0.9))
  assert value.uses_schedule is False  # the threshold base decides its own counts
  assert value.label() == "lookum(base=threshold)"
  assert parse_strategy("lookum", {"base": "threshold", "tau": "0.9"}) == value
