"""The lean loop state: the loop carries per-position statistics, not `[B, W, V]` logits,
unless the strategy declares `needs_logits` (then its view holds them)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lookum_jax import SamplerConfig, generate
from lookum_jax.model import tiny
from lookum_jax.sampling import (
  SMC,
  EntropyBounded,
  LookUM,
  LowConfidence,
  Margin,
  Proposal,
  Threshold,
  pytree_dataclass,
)
from lookum_jax.sampling.loop import init_decode
from lookum_jax.sampling.strategies.rules import Entropy, RandomOrder
from lookum_jax.testing import random_model
from policy_rl import PolicyConfig, init_policy
from policy_rl.lookum import PolicyLookUM
from policy_rl.strategy import Policy

# A vocabulary no other axis of the state has (gen 16, block 8, prompt 5, head dim 16).
VOCAB = 97
GEN, BLOCK = 16, 8


@pytest.fixture(scope="module")
def model():
  return random_model(tiny(vocab_size=VOCAB), seed=3)


@pytest.fixture(scope="module")
def policy():
  return init_policy(PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16),
                     seed=0)


def prompts():
  return jnp.asarray([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]], jnp.int32)


def init_shapes(model, config):
  """The `ShapeDtypeStruct`s of the loop's initial state (the `while_loop` carries exactly
  this structure, so no later state holds an array it does not)."""
  ids = dict(mask_token_id=VOCAB - 1, eos_token_id=VOCAB - 2, stop_token_ids=(VOCAB - 2,))
  return jax.eval_shape(lambda p, k: init_decode(model, p, None, k, config, **ids)[1],
                        prompts(), jax.random.key(0))


def vocab_sized(state) -> list[str]:
  return [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(state)
          if VOCAB in leaf.shape]


@pytree_dataclass
class ThresholdWithLogits(Threshold):
  """The threshold rule, declaring that it reads the full distribution (and checking that its
  view holds it)."""

  needs_logits = True

  def select(self, view, key):
    assert view.logits is not None and view.logits.shape == (view.candidates.shape[0], VOCAB)
    return super().select(view, key)


@pytree_dataclass
class LookUMWithLogits(LookUM):
  needs_logits = True


LEAN = {
    "low_confidence": LowConfidence(), "random": RandomOrder(), "margin": Margin(),
    "entropy": Entropy(), "threshold": Threshold(tau=0.5),
    "entropy_bounded": EntropyBounded(gamma=0.5), "lookum": LookUM(paths=3),
    "lookum_threshold": LookUM(paths=2, base=Threshold(tau=0.5)),
    "smc_argmax": SMC(paths=2, temperature=0.1),
}


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_a_strategy_without_needs_logits_carries_nothing_vocab_sized(model, policy, cache):
  strategies = dict(LEAN, policy=Policy().with_policy(policy),
                    policy_lookum=PolicyLookUM(paths=2).with_policy(policy))
  for name, strategy in strategies.items():
    assert not strategy.needs_logits
    config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN, strategy=strategy,
                           cache=cache)
    state = init_shapes(model, config)
    assert vocab_sized(state) == [], name
    assert state.window.logits is None
    assert state.window.candidates.shape == (2, config.window_length)


def test_only_what_a_strategy_reads_is_carried(model):
  def carried(strategy):
    window = init_shapes(model, SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN,
                                              strategy=strategy)).window
    return {name for name in ("confidence", "certainty", "entropy", "margin")
            if getattr(window, name) is not None}

  assert carried(LowConfidence()) == {"certainty"}
  assert carried(RandomOrder()) == set()
  assert carried(Margin()) == {"margin"}
  assert carried(Threshold()) == {"confidence", "certainty"}
  # LookUM: its base's statistics, the proposal's and the entropy its verifier may charge.
  assert carried(LookUM(paths=2, base=Margin())) == {"margin", "entropy"}


def test_needs_logits_is_paid_only_where_declared(model):
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN, temperature=0.5,
                         strategy=ThresholdWithLogits(tau=0.5))
  assert init_shapes(model, config).window.logits.shape == (2, GEN, VOCAB)
  # Configurations that read the distribution: SMC resampling under sampling, LookUM's drawn
  # tokens.
  smc = config.replace(strategy=SMC(paths=2, temperature=0.1))
  assert vocab_sized(init_shapes(model, smc)) == [".window.logits"]
  drawn = config.replace(strategy=LookUM(paths=2, proposal=Proposal(sample_tokens=True)))
  assert vocab_sized(init_shapes(model, drawn)) == [".window.logits"]


@pytest.mark.parametrize("lean,full,cache", [
    (Threshold(tau=0.5), ThresholdWithLogits(tau=0.5), "none"),
    (LookUM(paths=3, base=Threshold(tau=0.5)),
     LookUMWithLogits(paths=3, base=ThresholdWithLogits(tau=0.5)), "dual"),
])
def test_statistics_computed_after_the_forward_give_the_tokens_of_the_logits(
    model, lean, full, cache):
  """Under sampling the candidates are drawn right after each forward with the key of the
  step that reads them: the same tokens and NFE as drawing them from carried logits (the
  view of a `needs_logits` strategy, which sees `view.logits`)."""
  config = SamplerConfig(gen_length=GEN, block_length=BLOCK, steps=GEN, temperature=0.7,
                         cache=cache, strategy=lean)
  keys = jax.random.split(jax.random.key(4), 2)
  expected = generate(model, prompts(), config, keys)
  got = generate(model, prompts(), config.replace(strategy=full), keys)
  np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(expected.tokens))
  np.testing.assert_array_equal(np.asarray(got.nfe), np.asarray(expected.nfe))
