"""The selection rules strategies share, and the strategy interface (`types.Strategy`).

A strategy is a `pytree_dataclass`: its structure is static, its numbers traced. Most
strategies are a per-sequence rule

    select(view: StepView, key) -> commit [W] bool

that the loop `vmap`s over the batch (`Strategy.step` turns it into a step). A strategy
that needs more (look-ahead forwards, a learned policy, its own carried state) overrides
`step(ctx, state)` instead; see `lookum_jax.sampling.types.StepContext`.

Every per-position array a strategy sees covers the loop's *window* of response positions
(`[W]`: the whole response, or the current block under a KV cache), never the prompt: noise
drawn over it is drawn over response positions by construction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lookum_jax.sampling.types import (  # noqa: F401  (re-exported)
    StepView,
    Strategy,
    check_number,
    check_unit_interval,
    pytree_dataclass,
    static_field,
)


def rank_positions(score: jax.Array, eligible: jax.Array, demoted: jax.Array) -> jax.Array:
  """Rank `[W]` of each position (0 = commit first): eligible, not demoted, then score.

  Ties in score go to the lower index (as `lax.top_k`). Ineligible positions rank last.
  """
  # lexsort: the last key is the primary one.
  order = jnp.lexsort((-score, demoted, ~eligible))
  return jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0], dtype=order.dtype))


def commit_top_k(score: jax.Array, view: StepView, k: jax.Array) -> jax.Array:
  """Commits the `k` highest-scoring eligible positions."""
  rank = rank_positions(score, view.eligible, view.demoted)
  return (rank < k) & view.eligible


def commit_at_least_one(chosen: jax.Array, score: jax.Array, view: StepView) -> jax.Array:
  """`chosen & eligible`, or the single best eligible position if that is empty."""
  chosen = chosen & view.eligible
  best = commit_top_k(score, view, jnp.int32(1))
  return jnp.where(jnp.any(chosen), chosen, best)
