"""Selection rules of each strategy on hand-built step views (no model)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lookum_jax.parsing import parse_strategy
from lookum_jax.sampling import scores
from lookum_jax.sampling.strategies import StepView, rank_positions


def make_view(logits, eligible=None, demoted=None, num_transfer=0, start=0):
  """A view over a window of response positions `[start, start + W)`."""
  logits = jnp.asarray(logits, jnp.float32)
  length = logits.shape[0]
  candidates = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  eligible = jnp.ones(length, bool) if eligible is None else jnp.asarray(eligible, bool)
  return StepView.of_logits(
      logits, candidates,
      eligible=eligible, masked=eligible,
      demoted=jnp.zeros(length, bool) if demoted is None else jnp.asarray(demoted, bool),
      num_transfer=jnp.int32(num_transfer),
      positions=start + jnp.arange(length, dtype=jnp.int32))


def peaked(probabilities, vocab=4):
  """Logits `[T, vocab]` whose top-1 probability at position t is `probabilities[t]`."""
  rows = []
  for p in probabilities:
    rest = (1.0 - p) / (vocab - 1)
    rows.append(np.log([p] + [rest] * (vocab - 1)))
  return np.asarray(rows, np.float32)


def select(name, view, params=None, key=None):
  strategy = parse_strategy(name, params)
  return np.asarray(strategy.select(view, jax.random.key(0) if key is None else key))


def test_rank_order_eligible_then_not_demoted_then_score_then_index():
  score = jnp.asarray([0.5, 0.9, 0.5, 0.9, 0.99, 0.7])
  eligible = jnp.asarray([1, 1, 1, 1, 0, 1], bool)
  demoted = jnp.asarray([0, 1, 0, 0, 0, 0], bool)
  rank = np.asarray(rank_positions(score, eligible, demoted))
  # 3 (0.9), 5 (0.7), 0 and 2 (tie 0.5: lower index first), 1 (demoted), 4 (ineligible)
  np.testing.assert_array_equal(rank, [2, 4, 3, 0, 5, 1])


def test_low_confidence_commits_the_k_most_confident_eligible():
  view = make_view(peaked([0.3, 0.9, 0.6, 0.95, 0.8]), eligible=[1, 1, 1, 0, 1],
                   demoted=[0, 1, 0, 0, 0], num_transfer=2)
  # 3 is ineligible, 1 is demoted (EOS): the two best others are 4 and 2.
  np.testing.assert_array_equal(select("low_confidence", view), [0, 0, 1, 0, 1])


def test_margin_and_entropy_rank_by_their_own_scores():
  # Position 0: top-1 0.5 but a close second (small margin, low entropy spread);
  # position 1: top-1 0.45, others flat (large margin); position 2: flat.
  logits = np.log(np.asarray([[0.5, 0.48, 0.01, 0.01], [0.45, 0.19, 0.18, 0.18],
                              [0.25, 0.25, 0.25, 0.25]], np.float32))
  view = make_view(logits, num_transfer=1)
  np.testing.assert_array_equal(select("low_confidence", view), [1, 0, 0])
  np.testing.assert_array_equal(select("margin", view), [0, 1, 0])
  np.testing.assert_array_equal(select("entropy", view), [1, 0, 0])  # 0.79 vs 1.30 nats


def test_threshold_commits_every_confident_position_or_the_best_one():
  view = make_view(peaked([0.95, 0.9, 0.5, 0.97, 0.92]), eligible=[1, 1, 1, 0, 1],
                   demoted=[0, 0, 0, 0, 1])
  # >= tau (a confidence equal to tau included, as Fast-dLLM), eligible, not demoted.
  tau = float(view.confidence[1])
  np.testing.assert_array_equal(select("threshold", view, {"tau": tau}), [1, 1, 0, 0, 0])
  # None above tau: exactly the single most confident eligible, non-demoted position.
  np.testing.assert_array_equal(select("threshold", view, {"tau": 0.99}), [1, 0, 0, 0, 0])
  only_demoted = make_view(peaked([0.5, 0.6]), eligible=[0, 1], demoted=[0, 1])
  np.testing.assert_array_equal(select("threshold", only_demoted, {"tau": 0.9}), [0, 1])


def test_entropy_bounded_commits_the_longest_prefix_within_gamma():
  """EB-Sampler: the longest lowest-entropy prefix U with sum(H[U]) - max(H[U]) <= gamma."""
  view = make_view(peaked([0.99, 0.9, 0.6, 0.97, 0.3]))
  entropy = np.asarray(scores.entropy(view.logits))
  ordered = np.sort(entropy)  # positions 0, 3, 1, 2, 4
  for count in range(1, 5):
    gamma = float(ordered[:count - 1].sum()) + 1e-4
    commit = select("entropy_bounded", view, {"gamma": gamma})
    assert commit.sum() == count
    assert set(np.flatnonzero(commit)) == set(np.argsort(entropy)[:count])
  # Even gamma = 0 commits one position.
  np.testing.assert_array_equal(select("entropy_bounded", view, {"gamma": 0.0}),
                                [1, 0, 0, 0, 0])


def test_random_commits_k_eligible_and_draws_by_response_position():
  length, eligible = 12, np.r_[np.zeros(4), np.ones(6), np.zeros(2)]
  view = make_view(np.zeros((length, 4)), eligible=eligible, num_transfer=3)
  key = jax.random.key(3)
  commit = select("random", view, key=key)
  assert commit.sum() == 3 and np.all(eligible[commit.astype(bool)] == 1)
  # The same positions seen through a window of just the block (response positions 4..9,
  # as under a KV cache): the same draw, so the same choice.
  block = make_view(np.zeros((6, 4)), num_transfer=3, start=4)
  np.testing.assert_array_equal(select("random", block, key=key), commit[4:10])
  counts = sum(select("random", view, key=jax.random.key(seed)) for seed in range(40))
  assert np.all(counts[eligible == 1] > 0)  # every eligible position gets picked


@pytest.mark.parametrize("name, params, message", [
    ("threshold", {"tau": 1.5}, r"threshold tau must be in \[0, 1\], got 1.5"),
    ("entropy_bounded", {"gamma": -1.0}, r"entropy_bounded gamma must be >= 0, got -1.0"),
    ("threshold", [0.9], r"takes its parameters as a dict, got list"),
    ("threshold", {"gamma": 0.1}, r"unknown parameter\(s\) \['gamma'\] for strategy 'threshold'"),
    ("nonsense", None, r"unknown strategy 'nonsense'"),
])
def test_bad_strategy_params_raise(name, params, message):
  with pytest.raises(ValueError, match=message):
    parse_strategy(name, params)
