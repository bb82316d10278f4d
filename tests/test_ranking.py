"""Confidence ranking in log space: probabilities that round to 1.0 in float32 still rank
apart (ties would fall to the lower index)."""

import jax.numpy as jnp
import numpy as np

from lookum_jax.sampling import LowConfidence, scores
from lookum_jax.sampling.strategies import StepView


def test_log_odds_separates_probabilities_that_round_to_one():
  # Top logit 30 / 25 above three others: p = 1 - 3e-13 and 1 - 4e-11, both 1.0 in float32.
  logits = jnp.asarray([[30.0, 0.0, 0.0, 0.0], [25.0, 0.0, 0.0, 0.0]], jnp.float32)
  tokens = jnp.zeros((2,), jnp.int32)
  probability = np.asarray(scores.token_probability(logits, tokens))
  assert probability[0] == probability[1] == 1.0  # the float32 tie the ranking must avoid
  log_odds = np.asarray(scores.log_odds(logits, tokens))
  np.testing.assert_allclose(log_odds, [30.0 - np.log(3.0), 25.0 - np.log(3.0)], rtol=1e-6)


def test_low_confidence_commits_the_more_certain_of_two_near_one_positions():
  logits = jnp.asarray([[25.0, 0, 0, 0], [30.0, 0, 0, 0], [2.0, 0, 0, 0]], jnp.float32)
  candidates = jnp.zeros((3,), jnp.int32)
  view = StepView.of_logits(
      logits, candidates, eligible=jnp.ones(3, bool),
      masked=jnp.ones(3, bool), demoted=jnp.zeros(3, bool), num_transfer=jnp.int32(1),
      positions=jnp.arange(3))
  # By probability positions 0 and 1 tie at 1.0 and the lower index would win.
  np.testing.assert_array_equal(np.asarray(LowConfidence().select(view, None)), [0, 1, 0])
