"""The premise probe (`experiments/chain_premise.py`) holds the commit it is asked for: with
`--probe-rank second` / `last` the held position is the 2nd most / the least confident of
the positions the base commits at that step, checked against a numpy ranking of confidences
recomputed from the canvas before the step."""

import importlib.util
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lookum_jax import SamplerConfig, generate
from lookum_jax.model import tiny
from lookum_jax.testing import random_model

GEN, PROMPT, K = 16, 5, 4
MASK = 127


def _load_probe():
  path = Path(__file__).resolve().parents[1] / "experiments" / "chain_premise.py"
  spec = importlib.util.spec_from_file_location("chain_premise", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look the module up while it loads
  spec.loader.exec_module(module)
  return module


premise = _load_probe()


@pytest.fixture(scope="module")
def model():
  return random_model(tiny(), seed=3)  # peaked weights: confidences spread, no near ties


def _softmax(logits):
  z = np.exp(logits - logits.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


@pytest.mark.parametrize("rank", ["second", "last"])
def test_held_position_is_the_ranked_commit(model, rank):
  prompts = jnp.asarray([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [20, 3, 40, 17, 2]],
                        jnp.int32)
  targets = np.random.default_rng(0).integers(0, 100, (prompts.shape[0], GEN))
  config = SamplerConfig(gen_length=GEN, block_length=GEN, steps=GEN // K,
                         strategy=premise.PremiseProbe(rank=rank))
  result = generate(model, prompts, config, jax.random.key(0), targets=targets)
  record = jax.tree.map(np.asarray, result.strategy_state)
  tokens, order = np.asarray(result.tokens), np.asarray(result.unmask_order)[:, PROMPT:]
  assert record["valid"].all() and not record["fallback"].any()
  assert (record["commits"] == K).all()
  for row in range(prompts.shape[0]):
    for step in range(GEN // K):
      # The canvas before this step: what earlier steps committed, the rest masked.
      canvas = tokens[row].copy()
      canvas[PROMPT:][order[row] >= step] = MASK
      logits = np.asarray(model(jnp.asarray(canvas)[None]), np.float64)[0, PROMPT:]
      probs = _softmax(logits)
      probs[:, MASK] = 0.0  # never a candidate (it keeps its share of the softmax)
      confidence = probs.max(-1)
      committed = np.nonzero(order[row] == step)[0]
      assert len(committed) == K
      ranked = committed[np.argsort(-confidence[committed], kind="stable")]
      expected = ranked[1] if rank == "second" else ranked[-1]
      assert record["position"][row, step] == expected
      np.testing.assert_allclose(record["confidence"][row, step], confidence[expected],
                                 rtol=1e-4)


def test_a_row_with_one_commit_falls_back_to_it():
  """One eligible position left: "second" and "last" hold it and flag the fallback; "first"
  never flags one."""
  certainty = jnp.asarray([[3.0, 1.0, 2.0, 0.5], [3.0, 1.0, 2.0, 0.5]])
  eligible = jnp.asarray([[True, True, True, True], [False, False, True, False]])
  view = types.SimpleNamespace(certainty=certainty, eligible=eligible,
                               demoted=jnp.zeros_like(eligible), num_transfer=jnp.int32(3))
  for rank, want in (("first", [0, 2]), ("second", [2, 2]), ("last", [1, 2])):
    held, commits, fallback = (np.asarray(x) for x in premise.held_position(view, rank))
    assert held.tolist() == want
    assert commits.tolist() == [3, 1]
    assert fallback.tolist() == ([False, False] if rank == "first" else [False, True])


def test_an_unknown_rank_is_refused():
  with pytest.raises(ValueError, match="rank"):
    premise.PremiseProbe(rank="middle")
