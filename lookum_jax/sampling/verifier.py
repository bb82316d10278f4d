"""The look-ahead verifier: how certain a model is of a candidate's look-ahead canvas.

A `Verifier` is a value: a metric (per-position certainty from look-ahead logits), a scope
(which window positions the score averages over) and an entropy cost. LookUM, SMC and
`policy_rl`'s `PolicyLookUM` share it. Metrics and scopes are plain functions: a new one is a
function passed as `Verifier(metric=my_metric)`; the tables below name the shipped ones for
command lines and JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from lookum_jax.sampling import scores
from lookum_jax.sampling.types import (
    LoopState,
    StepContext,
    check_number,
    pytree_dataclass,
    static_field,
)

# A metric: per-position certainty `[..., W]` of look-ahead logits `[..., W, V]`.
Metric = Callable[[jax.Array], jax.Array]
# A scope: `(ctx, state, masked_after [B, K, W]) -> [B, K, W]` the positions scored, where
# `masked_after` is what stays masked after each candidate's commit.
Scope = Callable[[StepContext, LoopState, jax.Array], jax.Array]


def neg_entropy(logits: jax.Array) -> jax.Array:
  return -scores.entropy(logits)


def response_scope(ctx: StepContext, state: LoopState, masked_after: jax.Array) -> jax.Array:
  """Every response position the look-ahead recomputes (the paper's sequence-level score)."""
  del ctx, state
  return jnp.ones(masked_after.shape, bool)


def masked_scope(ctx: StepContext, state: LoopState, masked_after: jax.Array) -> jax.Array:
  """Positions still masked after the candidate's commit."""
  del ctx, state
  return masked_after


def common_scope(ctx: StepContext, state: LoopState, masked_after: jax.Array) -> jax.Array:
  """Positions masked after every candidate's commit: all are judged on the same ones."""
  del ctx, state
  return jnp.broadcast_to(jnp.all(masked_after, axis=1, keepdims=True), masked_after.shape)


def committed_scope(ctx: StepContext, state: LoopState, masked_after: jax.Array) -> jax.Array:
  """The positions the candidate just committed."""
  return ctx.window_masked(state)[:, None] & ~masked_after


def block_scope(ctx: StepContext, state: LoopState, masked_after: jax.Array) -> jax.Array:
  """The current block."""
  return jnp.broadcast_to(ctx.in_block(state)[None, None], masked_after.shape)


METRICS: dict[str, Metric] = {
    "neg_entropy": neg_entropy,
    "confidence": scores.top1_probability,
    "margin": scores.margin,
}
SCOPES: dict[str, Scope] = {
    "response": response_scope,
    "masked": masked_scope,
    "common": common_scope,
    "committed": committed_scope,
    "block": block_scope,
}


# Scope names that were removed, and why.
REMOVED_SCOPES: dict[str, str] = {
    "sequence": "verifier_scope='sequence' was removed: it averaged over prompt positions, "
                "whose outputs are untrained (models are trained on masked positions only) "
                "and which the engine no longer computes. Use verifier_scope='response'."}


def _resolve(value: Any, table: dict[str, Callable], what: str,
             removed: dict[str, str] | None = None) -> Callable:
  if callable(value):
    return value
  if value in (removed or {}):
    raise ValueError(removed[value])
  if value not in table:
    raise ValueError(f"{what} must be one of {sorted(table)}, got {value!r}.")
  return table[value]


def _name(value: Callable, table: dict[str, Callable]) -> str:
  for name, function in table.items():
    if function is value:
      return name
  return getattr(value, "__name__", repr(value))


@pytree_dataclass
class Verifier:
  """Scores K look-ahead canvases per row.

  Attributes:
    metric: per-position certainty of look-ahead logits; a function or a name in `METRICS`
      ("neg_entropy", "confidence", "margin").
    scope: the window positions averaged; a function or a name in `SCOPES`: "response"
      (every position the look-ahead recomputes: the whole response without a KV cache, the
      block with one), "masked" (still masked after the candidate: favours committing
      uncertain positions, which leave the average), "common" (masked after every
      candidate), "committed" (the positions the candidate commits) or "block".
    entropy_cost: lambda of the information-gain form: the score minus lambda x the summed
      entropy (under the current logits) of the positions the candidate commits (traced).
  """

  metric: Any = static_field("neg_entropy")
  scope: Any = static_field("common")
  entropy_cost: float = 0.0

  def __post_init__(self):
    object.__setattr__(self, "metric", _resolve(self.metric, METRICS, "verifier"))
    object.__setattr__(self, "scope", _resolve(self.scope, SCOPES, "verifier_scope",
                                               REMOVED_SCOPES))
    check_number("entropy_cost", "", self.entropy_cost, lambda v: v >= 0, ">= 0")

  def to_dict(self) -> dict[str, Any]:
    """The verifier's JSON form (today's flat parameter names)."""
    return {"verifier": _name(self.metric, METRICS),
            "verifier_scope": _name(self.scope, SCOPES), "entropy_cost": self.entropy_cost}

  def verify(self, ctx: StepContext, state: LoopState, commits: jax.Array,
             tokens: jax.Array) -> Candidates:
    """Scores K candidate commit sets per row (`commits`, `tokens` `[B, K, W]`) by the
    certainty of their look-ahead canvases, all B * K look-aheads in one model call."""
    commits &= (ctx.eligible(state) & ctx.active(state)[:, None])[:, None]
    logits = ctx.lookahead(state, commits, tokens)
    scope = self.scope(ctx, state, ctx.window_masked(state)[:, None] & ~commits)
    score = self.mean_certainty(logits, scope)
    # The information-gain form: pay for the uncertainty committed (0 leaves score as is).
    committed = jnp.sum(jnp.where(commits, ctx.entropy(state)[:, None], 0.0), -1)
    score = score - self.entropy_cost * committed
    return Candidates(commits=commits, tokens=tokens, logits=logits, score=score)

  def mean_certainty(self, logits: jax.Array, scope: jax.Array) -> jax.Array:
    """Mean certainty of look-ahead logits `[..., W, V]` over `scope` `[..., W]` -> `[...]`."""
    return self.mean_over(self.metric(logits), scope)

  @staticmethod
  def mean_over(certainty: jax.Array, scope: jax.Array) -> jax.Array:
    """Mean of per-position `certainty` `[..., W]` over `scope` `[..., W]` -> `[...]`."""
    total = jnp.sum(jnp.where(scope, certainty, 0.0), axis=-1)
    return total / jnp.maximum(jnp.sum(scope, axis=-1), 1)


@struct.dataclass
class Candidates:
  """One branching step's K candidate paths per row (shapes `[B, K, ...]`)."""

  commits: jax.Array  # [B, K, W] bool, positions each candidate commits
  tokens: jax.Array  # [B, K, W] int32, the tokens it writes there
  logits: jax.Array  # [B, K, W, V] look-ahead logits (within the step; never carried)
  score: jax.Array  # [B, K] verifier score (higher = more certain)
