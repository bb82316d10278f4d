"""The classic unmasking rules: LLaDA's confidence and random remasking, margin, entropy,
Fast-dLLM's confidence threshold and the EB-Sampler."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from lookum_jax.sampling import scores
from lookum_jax.sampling.strategies.base import (
  Strategy,
  check_number,
  check_unit_interval,
  commit_at_least_one,
  commit_top_k,
  pytree_dataclass,
  rank_positions,
)
from lookum_jax.sampling.types import StepView


class Rule(Strategy):
  """A per-sequence commit rule: `score` ranks the eligible positions (most committable
  first) and `select` commits some of them. LookUM takes any rule as its base: its greedy
  candidate is the rule's commit set, its other candidates draw from the rule's ranking.

  `reads` names the statistics `score` and `select` read, `proposal_reads` those
  `proposal_log_score` reads (LookUM's draws)."""

  proposal_reads: ClassVar[frozenset[str]] = frozenset({"certainty"})

  def score(self, view: StepView) -> jax.Array:
    """`[W]` ranking score (higher = commit first); default the candidates' log-odds."""
    return view.certainty

  def proposal_log_score(self, view: StepView) -> jax.Array:
    """`[W]` log-weights of LookUM's draws from the pool (`score ** (1 / T)` in log space);
    default the log-probability of the candidate, from its log-odds (no ties at p = 1)."""
    return jax.nn.log_sigmoid(view.certainty)

  def select(self, view: StepView, key: jax.Array) -> jax.Array:
    del key
    return commit_top_k(self.score(view), view, view.num_transfer)


@pytree_dataclass
class LowConfidence(Rule):
  """Commit the scheduled number of most confident positions (LLaDA's default)."""

  name = "low_confidence"
  reads = frozenset({"certainty"})


@pytree_dataclass
class RandomOrder(Strategy):
  """Commit the scheduled number of eligible positions chosen uniformly (LLaDA's "random")."""

  name = "random"
  reads = frozenset()

  def select(self, view, key):
    score = scores.position_uniform(key, view.positions)
    return commit_top_k(score, view, view.num_transfer)


@pytree_dataclass
class Margin(Rule):
  """Commit the scheduled number of positions with the largest top-1 minus top-2 probability."""

  name = "margin"
  reads = frozenset({"margin"})
  proposal_reads = frozenset({"margin"})

  def score(self, view):
    return view.margin

  def proposal_log_score(self, view):
    return jnp.log(jnp.maximum(view.margin, 1e-20))


@pytree_dataclass
class Entropy(Rule):
  """Commit the scheduled number of lowest-entropy positions."""

  name = "entropy"
  reads = frozenset({"entropy"})

  def score(self, view):
    return -view.entropy


@pytree_dataclass
class Threshold(Rule):
  """Fast-dLLM's confidence-threshold parallel decoding.

  Commits every eligible position whose confidence is at least `tau`; if none is, the single
  most confident one, decided per sequence (one public implementation decides over the whole
  batch, which can stall a row). The step count is not scheduled: a block lasts until it is
  fully committed.
  """

  name = "threshold"
  reads = frozenset({"confidence", "certainty"})
  tau: float = 0.9

  def __post_init__(self):
    check_unit_interval("threshold", "tau", self.tau)

  @property
  def uses_schedule(self) -> bool:
    return False

  def above(self, view: StepView) -> jax.Array:
    """`[W]` positions whose candidate's confidence reaches `tau` (not demoted): the rule
    before its at-least-one fallback."""
    return (view.confidence >= self.tau) & ~view.demoted

  def select(self, view, key):
    del key
    return commit_at_least_one(self.above(view), self.score(view), view)


@pytree_dataclass
class EntropyBounded(Rule):
  """The EB-Sampler.

  Sorts the eligible positions by entropy (lowest first) and commits the longest prefix U with
  `sum(H[U]) - max(H[U]) <= gamma`: the EB-Sampler's bound on the error of committing U in
  parallel (the sum of entropies bounds the joint's divergence from the product of marginals,
  and the largest term is the one a single commit would pay anyway). A single position always
  satisfies it, so every step commits at least one. Not scheduled.
  """

  name = "entropy_bounded"
  reads = frozenset({"entropy"})
  gamma: float = 0.1

  def __post_init__(self):
    check_number("entropy_bounded", "gamma", self.gamma, lambda v: v >= 0, ">= 0")

  def score(self, view):
    return -view.entropy

  @property
  def uses_schedule(self) -> bool:
    return False

  def select(self, view, key):
    del key
    ent = -self.score(view)
    rank = rank_positions(-ent, view.eligible, view.demoted)
    # Entropy of the position at each rank, then the running sum over ranks.
    ent_by_rank = jnp.zeros_like(ent).at[rank].set(jnp.where(view.eligible, ent, jnp.inf))
    # Ascending order: the largest entropy of a prefix is its last one.
    within_budget = jnp.cumsum(ent_by_rank) - ent_by_rank <= self.gamma
    count = jnp.maximum(jnp.sum(within_budget & jnp.isfinite(ent_by_rank)), 1)
    return commit_top_k(-ent, view, count)


