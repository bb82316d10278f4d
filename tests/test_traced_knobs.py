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
    LowConfidence,
    SamplerConfig,
    Threshold,
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
  compiles, results = sweep(model, [sampler(Threshold(tau=t))
                                    for t in (0.0, 0.3, 0.5, 0.8, 1.0)])
  assert compiles == 1
  steps = [int(r.num_steps[0]) for r in results]
  assert steps[0] == 1 and steps[-1] == GEN  # tau reaches the program: all at once, one by one

  compiles, results = sweep(model, [sampler(EntropyBounded(gamma=g))
                                    for g in (0.0, 0.1, 1.0, 10.0, 1e9)])
  assert compiles == 1
  assert int(results[0].num_steps[0]) == GEN and int(results[-1].num_steps[0]) == 1

  compiles, _ = sweep(model, [sampler(LookUM(paths=2, base=Threshold(tau=0.5),
                                             selector=ImportanceSampling(temperature=t)))
                              for t in (0.01, 0.1, 1.0)])
  assert compiles == 1

  # The sampling temperature and the CFG scale are numbers too (whether each is 0 is not).
  compiles, _ = sweep(model, [sampler(LowConfidence(), temperature=t, cfg_scale=c)
                              for t, c in ((0.5, 1.0), (1.0, 2.0), (2.0, 0.5))])
  assert compiles == 1


def test_policy_checkpoints_reuse_one_program(model):
  config = PolicyConfig(width=16, num_heads=2, mlp_dim=32, time_frequencies=16)
  configs = [sampler(Policy(mode="deterministic").with_policy(init_policy(config, seed=s)))
             for s in range(3)]
  compiles, results = sweep(model, configs)
  assert compiles == 1
  assert len({tuple(np.asarray(r.unmask_order).ravel()) for r in results}) > 1


def test_numbers_are_still_checked_where_they_are_concrete():
  with pytest.raises(ValueError, match=r"threshold tau must be in \[0, 1\], got 2.0"):
    Threshold(tau=2.0)
  with pytest.raises(ValueError, match="entropy_bounded gamma must be >= 0"):
    EntropyBounded(gamma=-1.0)
  with pytest.raises(ValueError, match="SamplerConfig.temperature must be >= 0"):
    sampler(LowConfidence(), temperature=-1.0)
  # Rebuilt from traced leaves (jit, tree maps), a value is not re-validated.
  leaves, treedef = jax.tree.flatten(LookUM(base=Threshold(tau=0.9)))
  assert jax.tree.unflatten(treedef, [object()] * len(leaves)).paths == 2
