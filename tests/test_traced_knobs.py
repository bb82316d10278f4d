"""Strategies are pytrees: a sweep over a number (tau, gamma, a selection temperature, the
sampling temperature, cfg_scale, a policy checkpoint) compiles one program per strategy
structure, and the number still reaches the program."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from lookum_jax.sampling import (
    EntropyBounded,
    ImportanceSampling,
    LookUM,
    SamplerConfig,
    Threshold,
    Verifier,
    generate,
)
from lookum_jax.sampling.loop import _generate_jit
from lookum_jax.testing import MODEL_CONFIG, random_model
from policy_rl import Policy, PolicyConfig, init_policy

# Shapes no other test file uses, so the first value of each sweep compiles here.
GEN, BATCH, PROMPT = 8, 1, 3
PROMPTS = np.arange(1, 1 + BATCH * PROMPT, dtype=np.int32).reshape(BATCH, PROMPT)


@pytest.fixture(scope="module")
def model():
  return random_model(MODEL_CONFIG)


def sampler(strategy, **changes) -> SamplerConfig:
  return SamplerConfig(gen_length=GEN, block_length=GEN, steps=GEN, strategy=strategy,
                       **changes)


def sweep(model, configs) -> tuple[int, list]:
  """Programs compiled for `configs`, and their results."""
  before = _generate_jit._cache_size()
  results = [generate(model, PROMPTS, c, jax.random.key(0)) for c in configs]
  return _generate_jit._cache_size() - before, results


def test_a_sweep_over_a_number_compiles_once_per_structure(model):
  # One LookUM structure, five points: tau, the selection temperature, the entropy cost, the
  # sampling temperature and the CFG scale all change (whether each of the last two is 0 is
  # structure, so none is 0 here).
  points = [(0.0, 0.01, 0.0, 0.5, 1.0), (0.3, 0.1, 0.1, 1.0, 2.0), (0.5, 1.0, 0.5, 2.0, 0.5),
            (0.8, 0.05, 1.0, 0.7, 1.5), (1.0, 0.02, 2.0, 1.5, 3.0)]
  compiles, results = sweep(model, [sampler(
      LookUM(paths=2, base=Threshold(tau=tau), selector=ImportanceSampling(temperature=t),
             verifier=Verifier(entropy_cost=cost)), temperature=temperature, cfg_scale=cfg)
      for tau, t, cost, temperature, cfg in points])
  assert compiles == 1
  steps = [int(r.num_steps[0]) for r in results]
  assert steps[0] == 1 and steps[-1] > 1  # tau reaches the program

  compiles, results = sweep(model, [sampler(EntropyBounded(gamma=g))
                                    for g in (0.0, 0.1, 1.0, 10.0, 1e9)])
  assert compiles == 1
  assert int(results[0].num_steps[0]) == GEN and int(results[-1].num_steps[0]) == 1


def test_policy_checkpoints_reuse_one_program(model):
  config = PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16)

  def checkpoint(seed: int, output_bias: float):
    policy = init_policy(config, seed=seed)
    policy.head.bias[...] = jax.numpy.full_like(policy.head.bias[...], output_bias)
    return policy

  configs = [sampler(Policy(mode="deterministic").with_policy(checkpoint(s, bias)))
             for s, bias in ((0, -3.0), (1, 0.0), (2, 3.0))]
  compiles, results = sweep(model, configs)
  assert compiles == 1
  steps = [int(r.num_steps[0]) for r in results]
  assert steps[0] == GEN and steps[-1] == 1  # the weights reach the program


def test_numbers_are_still_checked_where_they_are_concrete():
  with pytest.raises(ValueError, match=r"threshold tau must be in \[0, 1\], got 2.0"):
    Threshold(tau=2.0)
  with pytest.raises(ValueError, match="entropy_bounded gamma must be >= 0"):
    EntropyBounded(gamma=-1.0)
  with pytest.raises(ValueError, match="SamplerConfig.temperature must be >= 0"):
    sampler(Threshold(), temperature=-1.0)
  # Rebuilt from traced leaves (jit, tree maps), a value is not re-validated.
  leaves, treedef = jax.tree.flatten(LookUM(base=Threshold(tau=0.9)))
  assert jax.tree.unflatten(treedef, [object()] * len(leaves)).paths == 2
