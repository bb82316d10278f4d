"""The classic unmasking rules: LLaDA's confidence and random remasking, margin, entropy,
Fast-dLLM's confidence threshold and the EB-Sampler."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from lookum_jax.sampling import scores
from lookum_jax.sampling.strategies.base import (
  Strategy,
  check_unit_interval,
  commit_at_least_one,
  commit_top_k,
  rank_positions,
)


@dataclasses.dataclass(frozen=True)
class LowConfidence(Strategy):
  """Commit the scheduled number of most confident positions (LLaDA's default)."""

  name = "low_confidence"

  def select(self, view, key):
    del key
    return commit_top_k(view.certainty, view, view.num_transfer)


@dataclasses.dataclass(frozen=True)
class RandomOrder(Strategy):
  """Commit the scheduled number of eligible positions chosen uniformly (LLaDA's "random")."""

  name = "random"

  def select(self, view, key):
    score = scores.position_uniform(key, view.positions)
    return commit_top_k(score, view, view.num_transfer)


@dataclasses.dataclass(frozen=True)
class Margin(Strategy):
  """Commit the scheduled number of positions with the largest top-1 minus top-2 probability."""

  name = "margin"

  def select(self, view, key):
    del key
    return commit_top_k(scores.margin(view.logits), view, view.num_transfer)


@dataclasses.dataclass(frozen=True)
class Entropy(Strategy):
  """Commit the scheduled number of lowest-entropy positions."""

  name = "entropy"

  def select(self, view, key):
    del key
    return commit_top_k(-scores.entropy(view.logits), view, view.num_transfer)


@dataclasses.dataclass(frozen=True)
class Threshold(Strategy):
  """Fast-dLLM's confidence-threshold parallel decoding.

  Commits every eligible position whose confidence is at least `tau`; if none is, the single
  most confident one, decided per sequence (one public implementation decides over the whole
  batch, which can stall a row). The step count is not scheduled: a block lasts until it is
  fully committed.
  """

  name = "threshold"
  tau: float = 0.9

  def __post_init__(self):
    check_unit_interval("threshold", "tau", self.tau)

  @property
  def uses_schedule(self) -> bool:
    return False

  def select(self, view, key):
    del key
    above = (view.confidence >= self.tau) & ~view.demoted
    return commit_at_least_one(above, view.certainty, view)


@dataclasses.dataclass(frozen=True)
class EntropyBounded(Strategy):
  """The EB-Sampler.

  Sorts the eligible positions by entropy (lowest first) and commits the longest prefix U with
  `sum(H[U]) - max(H[U]) <= gamma`: the EB-Sampler's bound on the error of committing U in
  parallel (the sum of entropies bounds the joint's divergence from the product of marginals,
  and the largest term is the one a single commit would pay anyway). A single position always
  satisfies it, so every step commits at least one. Not scheduled.
  """

  name = "entropy_bounded"
  gamma: float = 0.1

  def __post_init__(self):
    if not self.gamma >= 0:
      raise ValueError(f"entropy_bounded gamma must be >= 0, got {self.gamma!r}.")

  @property
  def uses_schedule(self) -> bool:
    return False

  def select(self, view, key):
    del key
    ent = scores.entropy(view.logits)
    rank = rank_positions(-ent, view.eligible, view.demoted)
    # Entropy of the position at each rank, then the running sum over ranks.
    ent_by_rank = jnp.zeros_like(ent).at[rank].set(jnp.where(view.eligible, ent, jnp.inf))
    # Ascending order: the largest entropy of a prefix is its last one.
    within_budget = jnp.cumsum(ent_by_rank) - ent_by_rank <= self.gamma
    count = jnp.maximum(jnp.sum(within_budget & jnp.isfinite(ent_by_rank)), 1)
    return commit_top_k(-ent, view, count)


